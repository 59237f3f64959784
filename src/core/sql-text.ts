/**
 * Checks of SQL text written in the config (a soft-delete condition) before pushsync puts it inside one of its own
 * statements. The scanner follows PostgreSQL's lexer for everything that can hide or end a statement: string
 * constants (`'…'` with `''`, `E'…'` with backslash escapes; standard_conforming_strings is on in pushsync's
 * sessions), quoted identifiers, dollar quotes (`$$…$$`, `$tag$…$tag$`), comments, parameters, parentheses and `;`.
 * It does not parse SQL: the database does that when pushsync validates the statement.
 */

/** A place in the text that matters for where a statement or an expression ends. */
export interface SqlMark {
  kind: '(' | ')' | ';' | 'comment' | 'parameter' | 'unterminated';
  /** 1-based position of the mark's first character. */
  at: number;
  /** The mark as written: `--`, `/*`, `$1`, or the opening quote of an unterminated constant. */
  text: string;
}

const IDENT_START = /[A-Za-z_\u0080-\uffff]/;
const IDENT_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/;
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;
const PARAMETER = /\$[0-9]+/y;

/** The end (exclusive) of a quoted constant opened at `start`, or -1 when it is never closed. */
function endOfQuoted(text: string, start: number, quote: string, backslashEscapes: boolean): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i];
    if (backslashEscapes && c === '\\') {
      i += 1;
    } else if (c === quote) {
      if (text[i + 1] !== quote) return i + 1;
      i += 1;
    }
  }
  return -1;
}

/** Every mark outside constants, identifiers and dollar quotes, in order; scanning stops at an unterminated one. */
export function scanSql(text: string): SqlMark[] {
  const marks: SqlMark[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    const at = i + 1;
    if (c === "'" || c === '"') {
      const end = endOfQuoted(text, i, c, false);
      if (end < 0) return [...marks, { kind: 'unterminated', at, text: c }];
      i = end;
    } else if (IDENT_START.test(c)) {
      let end = i + 1;
      while (end < text.length && IDENT_CHAR.test(text[end]!)) end += 1;
      // `E'…'` is an escape string only when the E stands alone: in `name'…'` the quote opens a plain constant.
      if (end === i + 1 && (c === 'e' || c === 'E') && text[end] === "'") {
        const close = endOfQuoted(text, end, "'", true);
        if (close < 0) return [...marks, { kind: 'unterminated', at, text: `${c}'` }];
        end = close;
      }
      i = end;
    } else if (c === '$') {
      PARAMETER.lastIndex = i;
      const param = PARAMETER.exec(text);
      DOLLAR_TAG.lastIndex = i;
      const tag = param ? null : DOLLAR_TAG.exec(text);
      if (param) {
        marks.push({ kind: 'parameter', at, text: param[0] });
        i += param[0].length;
      } else if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        if (close < 0) return [...marks, { kind: 'unterminated', at, text: tag[0] }];
        i = close + tag[0].length;
      } else {
        i += 1;
      }
    } else if ((c === '-' && text[i + 1] === '-') || (c === '/' && text[i + 1] === '*')) {
      marks.push({ kind: 'comment', at, text: text.slice(i, i + 2) });
      i += 2;
    } else {
      if (c === '(' || c === ')' || c === ';') marks.push({ kind: c, at, text: c });
      i += 1;
    }
  }
  return marks;
}

/**
 * Why `text` is not one SQL condition that stays inside the parentheses pushsync wraps around it, or null when it
 * is. Refused: `;`, comments, parameters, a `)` that would close pushsync's own parenthesis, a `(` or a quote left
 * open. The message completes "must be one SQL condition: …".
 */
export function conditionProblem(text: string): string | null {
  if (text.trim() === '') return 'it is empty';
  const open: SqlMark[] = [];
  for (const mark of scanSql(text)) {
    const found = `found '${mark.text}' at position ${mark.at}`;
    switch (mark.kind) {
      case ';':
        return `${found}; a condition cannot end the statement`;
      case 'comment':
        return `${found}; comments are not allowed (they could hide the rest of the statement)`;
      case 'parameter':
        return `${found}; parameters are not allowed (pushsync binds its own)`;
      case 'unterminated':
        return `the quote ${mark.text} at position ${mark.at} is never closed`;
      case '(':
        open.push(mark);
        break;
      case ')':
        if (!open.pop()) return `${found} with no '(' before it; it would close pushsync's own parenthesis`;
        break;
    }
  }
  const unclosed = open[open.length - 1];
  return unclosed ? `the '(' at position ${unclosed.at} is never closed` : null;
}

/**
 * Why `text` is not one SELECT that pushsync can read as a table inside its own statements
 * (`SELECT … FROM (<query>) t WHERE …`), or null when it is: it must start with SELECT or WITH, and everything
 * refused in a condition is refused here too (`;`, comments, parameters, unbalanced parentheses, open quotes). The
 * message completes "must be one SELECT statement: …". PostgreSQL refuses data-modifying WITH clauses in a
 * subquery, and pushsync runs it in a read-only transaction.
 */
export function selectProblem(text: string): string | null {
  const first = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase();
  if (first !== 'SELECT' && first !== 'WITH') {
    return text.trim() === ''
      ? 'it is empty'
      : `it starts with ${JSON.stringify(text.trim().split(/\s+/)[0]!.slice(0, 20))}; a query starts with SELECT or WITH`;
  }
  const problem = conditionProblem(text);
  return problem?.replace('a condition cannot end the statement', 'the query must be one statement') ?? null;
}

/**
 * Why configured SQL (a soft-delete condition, a `where`, a `query`) cannot go to a MySQL or MariaDB server as
 * written, beyond `conditionProblem`/`selectProblem`: the scanner reads SQL as Postgres does, and pushsync's MySQL
 * sessions use ANSI_QUOTES and NO_BACKSLASH_ESCAPES so that MySQL reads `'…'` and `"…"` the same way. Outside those quotes MySQL's lexer still
 * differs: `#` starts a comment, backticks quote identifiers, and a `$…$` the scanner takes for a dollar quote is an
 * identifier to MySQL; any of them could make the server see a different statement than the one checked. Backslashes
 * are refused anywhere.
 */
export function mysqlLexerProblem(text: string): string | null {
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\') return `found '\\' at position ${i + 1}; pushsync refuses backslashes in configured SQL`;
    if (quote !== null) {
      // A doubled quote stays inside; the scanner reads it the same way.
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '#') return `found '#' at position ${i + 1}; MySQL reads '#' as a comment`;
    else if (c === '`') return `found '\`' at position ${i + 1}; quote identifiers with double quotes (pushsync's sessions use ANSI_QUOTES)`;
    else if (c === '$') return `found '$' at position ${i + 1}; MySQL reads '$' in names, where the condition scanner reads dollar quotes`;
  }
  return null;
}
