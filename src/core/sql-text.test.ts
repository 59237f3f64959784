import { describe, expect, it } from 'vitest';
import { conditionProblem, mysqlLexerProblem, scanSql, selectProblem } from './sql-text.js';

describe('conditionProblem', () => {
  it.each([
    "status = 'deleted'",
    "status = 'deleted' OR is_gone",
    "(status IN ('a', 'b')) AND (deleted_at IS NOT NULL)",
    "note = 'it''s; done -- really /* no */ )'",
    "note = E'a \\' ; ) \\\\'",
    '"odd;name)" IS TRUE',
    '"a ""quoted;"" name" = 1',
    'body = $$ ; ) -- $$',
    'body = $x$ $$ ; ) $x$',
    "lower(status) = ANY (ARRAY['gone', 'deleted'])",
    '(SELECT count(*) FROM other o WHERE o.id = id) > 0',
    'price$eur > 0',
    "U&'d\\0061t\\+000061' = name",
    "name' x' = 'y'",
  ])('accepts %s', (text) => {
    expect(conditionProblem(text)).toBeNull();
  });

  it('refuses a condition that closes the parenthesis around it and runs more statements', () => {
    expect(conditionProblem('true) FROM t LIMIT 0; DROP TABLE y; SELECT (true')).toBe(
      "found ')' at position 5 with no '(' before it; it would close pushsync's own parenthesis",
    );
  });

  it.each([
    ['true; DROP TABLE y', "found ';' at position 5; a condition cannot end the statement"],
    ['a = 1 -- rest', "found '--' at position 7; comments are not allowed (they could hide the rest of the statement)"],
    ['a = 1 /* x */', "found '/*' at position 7; comments are not allowed (they could hide the rest of the statement)"],
    ['a =-- 1', "found '--' at position 4; comments are not allowed (they could hide the rest of the statement)"],
    ['id > $1', "found '$1' at position 6; parameters are not allowed (pushsync binds its own)"],
    ['(a = 1', "the '(' at position 1 is never closed"],
    ['a = 1)', "found ')' at position 6 with no '(' before it; it would close pushsync's own parenthesis"],
    [') OR (', "found ')' at position 1 with no '(' before it; it would close pushsync's own parenthesis"],
    ["status = 'open", "the quote ' at position 10 is never closed"],
    ['"status = 1', 'the quote " at position 1 is never closed'],
    ["x = E'\\'); DROP TABLE y; --", "the quote E' at position 5 is never closed"],
    ['x = $q$ ; ', 'the quote $q$ at position 5 is never closed'],
    ['  ', 'it is empty'],
  ])('refuses %j', (text, reason) => {
    expect(conditionProblem(text)).toBe(reason);
  });

  it('ends a plain string at a doubled-quote-free quote even after a backslash (standard conforming strings)', () => {
    // Postgres reads 'a\' as the string a\ , so the ; after it is outside any string.
    expect(conditionProblem("x = 'a\\'; DROP TABLE y; SELECT 'b'")).toBe("found ';' at position 9; a condition cannot end the statement");
  });

  it('reads an escape string only where E stands alone before the quote', () => {
    // In `ne'…'` the quote opens a plain string: the backslash does not escape it and the ; is outside.
    expect(conditionProblem("ne'\\'; x'")).toBe("found ';' at position 6; a condition cannot end the statement");
  });
});

describe('scanSql', () => {
  it('reports parentheses and semicolons outside constants, identifiers and dollar quotes, with 1-based positions', () => {
    expect(scanSql(`f(')') ; "(" $a$;$a$ (`)).toEqual([
      { kind: '(', at: 2, text: '(' },
      { kind: ')', at: 6, text: ')' },
      { kind: ';', at: 8, text: ';' },
      { kind: '(', at: 22, text: '(' },
    ]);
  });

  it('treats $ inside an identifier as part of the name, not a dollar quote', () => {
    expect(scanSql('a$b$ ; c')).toEqual([{ kind: ';', at: 6, text: ';' }]);
  });
});

describe('selectProblem', () => {
  it('accepts one SELECT or WITH query, with quoted semicolons and nested parentheses', () => {
    expect(selectProblem("SELECT o.id, (SELECT max(x) FROM y) AS m FROM orders o WHERE o.note <> ';)'")).toBeNull();
    expect(selectProblem('  with recent AS (SELECT 1 AS id) SELECT * FROM recent')).toBeNull();
  });

  it('refuses anything else, saying why', () => {
    expect(selectProblem('')).toBe('it is empty');
    expect(selectProblem('UPDATE t SET a = 1')).toBe('it starts with "UPDATE"; a query starts with SELECT or WITH');
    expect(selectProblem('SELECT 1; DROP TABLE t')).toBe("found ';' at position 9; the query must be one statement");
    expect(selectProblem('SELECT 1) x; DROP TABLE t; SELECT (1')).toMatch(/with no '\(' before it/);
    expect(selectProblem('SELECT 1 -- the rest')).toMatch(/comments are not allowed/);
    expect(selectProblem('SELECT $1')).toMatch(/parameters are not allowed/);
  });
});

describe('mysqlLexerProblem', () => {
  it("refuses '#', backticks, '$' and backslashes in conditions, where MySQL's lexer differs from the scanner's", () => {
    expect(mysqlLexerProblem("status = 'gone'")).toBeNull();
    expect(mysqlLexerProblem(`note = '# $5 \` it''s' AND "a""b" = 1`)).toBeNull();
    expect(mysqlLexerProblem('x = 1 # )')).toContain("'#' at position 7");
    expect(mysqlLexerProblem("x = 'a\\'")).toContain("'\\'");
    // The scanner reads `x'` … `y'` as a string constant; MySQL reads two identifiers and the `)` between them.
    expect(mysqlLexerProblem("`x'` = 1) OR (1 = 1 OR `y'` = 1")).toContain("found '`' at position 1");
    // The scanner reads $$ … $$ as a dollar quote; MySQL reads two identifiers named $$.
    expect(mysqlLexerProblem('$$ = 1) OR (1 = 1 OR $$ = 1')).toContain("found '$' at position 1");
  });
});
