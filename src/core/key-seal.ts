import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { AppError } from './errors.js';

/**
 * Primary-key values of tables whose key is masked, as pushsync stores them in Redis (push jobs, cursors,
 * reconciliation sets) and shows them (dashboard, `dlq list`, `status`): encrypted, never raw.
 *
 * AES-256-GCM with a synthetic IV (an HMAC of the value): the same value always seals to the same text, so job ids,
 * set members and cursors stay stable, and only equality of two values can be learnt from Redis. Both keys are
 * derived from `masking.key` (HMAC-SHA-256 of it over fixed labels); rotating it makes sealed values unreadable.
 */
const PREFIX = '~k1.';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class KeySealer {
  private readonly encKey: Buffer;
  private readonly ivKey: Buffer;

  constructor(maskingKey: Buffer) {
    this.encKey = createHmac('sha256', maskingKey).update('pushsync-redis').digest();
    this.ivKey = createHmac('sha256', maskingKey).update('pushsync-redis-iv').digest();
  }

  seal(value: string): string {
    const plain = Buffer.from(value, 'utf8');
    const iv = createHmac('sha256', this.ivKey).update(plain).digest().subarray(0, IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.encKey, iv);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url');
  }

  open(sealed: string, where: string): string {
    const fail = (why: string): never => {
      throw new AppError(
        'CURSOR_INVALID',
        `${where}: a stored key cannot be read (${why}); was masking.key changed? Run "pushsync reset" for the table`,
      );
    };
    if (!sealed.startsWith(PREFIX)) return fail('it is not sealed');
    const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64url');
    if (raw.length < IV_BYTES + TAG_BYTES) return fail('it is too short');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.encKey, raw.subarray(0, IV_BYTES));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      return fail('it does not decrypt with the current key');
    }
  }

  sealKey(pk: readonly string[]): string[] {
    return pk.map((v) => this.seal(v));
  }

  openKey(pk: readonly string[], where: string): string[] {
    return pk.map((v) => this.open(v, where));
  }
}
