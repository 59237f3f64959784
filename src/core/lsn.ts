/**
 * Postgres WAL positions (`16/B374D848`) as sortable values. The `_ordering` of change records is built from the
 * commit LSN so that plain string order is commit order.
 */
export function lsnToBigInt(lsn: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!match) throw new RangeError(`not an LSN: ${lsn}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function bigIntToLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function compareLsn(a: string, b: string): number {
  const x = lsnToBigInt(a);
  const y = lsnToBigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * `_ordering` of a change: `~` (sorts after every timestamp watermark up to the year 9999 and every integer one, so a
 * table moved from watermark sync to CDC orders its change records after its polled ones), the commit LSN as 16 hex
 * digits, and the change's position within its transaction.
 */
export function changeOrdering(commitLsn: string, position: number): string {
  return changeOrderingAt(transactionOrdering(commitLsn), position);
}

/** What the `_ordering` of every change of one transaction starts with; `changeOrderingAt` completes it. */
export function transactionOrdering(commitLsn: string): string {
  return `~${lsnToBigInt(commitLsn).toString(16).padStart(16, '0')}:`;
}

export function changeOrderingAt(transaction: string, position: number): string {
  return transaction + String(position).padStart(10, '0');
}

/**
 * `_ordering` of rows read by the initial snapshot of a CDC table: the slot's start position without a change
 * position, which sorts before every change streamed from that slot. The snapshot version of a row therefore loses
 * against any change of it; that is correct because change records are read from the table when sent, so they
 * are never older than a snapshot read.
 */
export function snapshotOrdering(slotStartLsn: string): string {
  return `~${lsnToBigInt(slotStartLsn).toString(16).padStart(16, '0')}`;
}
