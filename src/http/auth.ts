import { timingSafeEqual } from 'node:crypto';
import { hasAuth, type WebAuth } from '../core/web-access.js';

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Compare equal-length buffers so the time taken does not reveal where the secret differs.
  return x.length === y.length && timingSafeEqual(x, y);
}

/** True when the Authorization header satisfies the configured auth. */
export function authorized(header: string | undefined, auth: WebAuth): boolean {
  if (!hasAuth(auth)) return true;
  if (!header) return false;
  const [scheme, value = ''] = header.split(' ', 2);
  if (scheme?.toLowerCase() === 'bearer') return auth.token !== undefined && same(value, auth.token);
  if (scheme?.toLowerCase() !== 'basic') return false;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1) return false;
  const user = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  if (auth.token !== undefined && same(password, auth.token)) return true;
  return auth.username !== undefined && auth.password !== undefined && same(user, auth.username) && same(password, auth.password);
}
