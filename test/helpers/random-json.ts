/**
 * A pseudo-random JSON text for scanners' tests: escapes, backslashes before quotes, nesting, digits beyond 2^53 and
 * whitespace wherever JSON allows it. `next` is a seeded PRNG (test/helpers/prng.ts), so a failure reproduces.
 */
export function randomJson(next: () => number, depth = 0): string {
  const sp = (): string => [' ', '', '\n', '\t ', ''][Math.floor(next() * 5)]!;
  const strings = ['"a"', '""', '"\\\\"', '"x\\"y"', '"\\\\\\""', '"data"', '"d\\u0061ta"', '"config"', '"é😀"', '"\\u0041\\n"', '"{[,]}:"'];
  const scalars = ['0', '-1.5e+3', '12345678901234567890', 'true', 'false', 'null', ...strings];
  const pick = next();
  if (depth > 3 || pick < 0.4) return scalars[Math.floor(next() * scalars.length)]!;
  const n = Math.floor(next() * 4);
  if (pick < 0.7) return `[${sp()}${Array.from({ length: n }, () => randomJson(next, depth + 1)).join(`${sp()},${sp()}`)}${sp()}]`;
  const members = Array.from({ length: n }, () => `${strings[Math.floor(next() * strings.length)]!}${sp()}:${sp()}${randomJson(next, depth + 1)}`);
  return `{${sp()}${members.join(`${sp()},${sp()}`)}${sp()}}`;
}
