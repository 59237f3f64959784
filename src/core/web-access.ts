/**
 * Who may reach the dashboard: the one statement of the rule that config validation and the web server both apply.
 * A loopback host is reachable only from the machine itself; any other host needs credentials an attacker cannot
 * guess.
 */

/** What the dashboard accepts: a bearer token (also as a basic-auth password), or a user name and password. */
export interface WebAuth {
  token?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
}

/** Shortest `web.auth.token` on a non-loopback host, not counting leading and trailing whitespace. */
export const MIN_TOKEN_LENGTH = 16;
/** Shortest `web.auth.password` on a non-loopback host, not counting leading and trailing whitespace. */
export const MIN_PASSWORD_LENGTH = 12;

/**
 * The one loopback rule, for the dashboard's `web.host` and the destination URL's host alike: 127.0.0.0/8, `::1`
 * and `localhost`, as written in config or as the WHATWG URL parser spells them (it normalises `127.1` and `[0::1]`).
 */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function hasAuth(auth: WebAuth): boolean {
  return auth.token !== undefined || (auth.username !== undefined && auth.password !== undefined);
}

/**
 * Why the dashboard must not be served with this host and auth, each problem as `key: rule`; empty when it may.
 * Every configured credential must be strong, because each one alone opens the dashboard.
 */
export function webAccessProblems(host: string, auth: WebAuth): string[] {
  if (isLoopback(host)) return [];
  const exposed = `web.host ${host} is not loopback`;
  if (auth.token === undefined && auth.password === undefined) {
    return [`web.auth: ${exposed}, so the dashboard needs web.auth.token or web.auth.username/password`];
  }
  const problems: string[] = [];
  if (auth.token !== undefined && auth.token.trim().length < MIN_TOKEN_LENGTH) {
    problems.push(
      `web.auth.token: must be at least ${MIN_TOKEN_LENGTH} characters (not counting surrounding spaces) because ${exposed}; ` +
        'generate one with: openssl rand -hex 16',
    );
  }
  if (auth.password !== undefined && auth.password.trim().length < MIN_PASSWORD_LENGTH) {
    problems.push(`web.auth.password: must be at least ${MIN_PASSWORD_LENGTH} characters (not counting surrounding spaces) because ${exposed}`);
  }
  return problems;
}
