// The benchmark's transform: one change per row, so the cost measured is pushsync's per-row parse and re-encode.
export default function (record) {
  return { ...record, title: record.title === null ? null : record.title.toUpperCase() };
}
