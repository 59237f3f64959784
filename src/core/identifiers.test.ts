import { describe, expect, it } from 'vitest';
import { AppError } from './errors.js';
import { defaultTarget, parseQualifiedName, quoteIdent, slug } from './identifiers.js';

describe('parseQualifiedName', () => {
  it('splits schema and table', () => {
    expect(parseQualifiedName('public.orders')).toEqual([
      { text: 'public', quoted: false },
      { text: 'orders', quoted: false },
    ]);
    expect(parseQualifiedName('orders')).toEqual([{ text: 'orders', quoted: false }]);
  });

  it('keeps dots and spaces inside quotes and unescapes doubled quotes', () => {
    expect(parseQualifiedName('public."Order Items"')).toEqual([
      { text: 'public', quoted: false },
      { text: 'Order Items', quoted: true },
    ]);
    expect(parseQualifiedName('"my.schema"."a ""quoted"" name"')).toEqual([
      { text: 'my.schema', quoted: true },
      { text: 'a "quoted" name', quoted: true },
    ]);
    expect(parseQualifiedName('"a.b"')).toEqual([{ text: 'a.b', quoted: true }]);
  });

  it.each(['', 'a.', '.a', 'a..b', 'a.b.c', '"unterminated', '"a"b', 'a"b', '"a" .b'])('refuses %j as CONFIG_INVALID', (name) => {
    let caught: unknown;
    try {
      parseQualifiedName(name);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AppError);
    expect((caught as AppError).code).toBe('CONFIG_INVALID');
  });
});

describe('quoteIdent', () => {
  it('wraps a name in double quotes and doubles embedded quotes', () => {
    expect(quoteIdent('orders')).toBe('"orders"');
    expect(quoteIdent('Order Items')).toBe('"Order Items"');
    expect(quoteIdent('a"b')).toBe('"a""b"');
    expect(quoteIdent('a.b')).toBe('"a.b"');
  });
});

describe('defaultTarget', () => {
  it('lands a table in bronze as <source>_<table>', () => {
    expect(defaultTarget('app', 'public.orders')).toBe('bronze.app_orders');
    expect(defaultTarget('app', 'orders')).toBe('bronze.app_orders');
  });

  it('turns quoted, mixed-case and punctuated names into lower-case underscores', () => {
    expect(defaultTarget('crm-eu', 'public."Order Items"')).toBe('bronze.crm_eu_order_items');
    expect(defaultTarget('app', '"odd.schema"."Line.Items!"')).toBe('bronze.app_line_items');
  });

  it('falls back to a placeholder when nothing usable is left of the name', () => {
    expect(slug('"€€"')).toBe('table');
    expect(defaultTarget('app', '"€€"')).toBe('bronze.app_table');
  });
});
