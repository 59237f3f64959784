import { describe, expect, it } from 'vitest';
import { triggerSetting } from './postgres-introspect.js';

const trigger = (body: string, over = {}) => ({ name: 'tr', function: 'f', body, args: '', someColumns: false, ...over });

describe('which trigger keeps a column current', () => {
  it('sees NEW.col assigned in PL/pgSQL, quoted or not, with := or =', () => {
    expect(triggerSetting([trigger('BEGIN NEW.last_update = CURRENT_TIMESTAMP; RETURN NEW; END')], 'last_update')).toBe('tr');
    expect(triggerSetting([trigger('begin new."updated_at" := now(); return new; end')], 'updated_at')).toBe('tr');
  });

  it('does not count a comparison, another column, or a trigger limited to UPDATE OF some columns', () => {
    expect(triggerSetting([trigger('IF NEW.updated_at == OLD.updated_at THEN RETURN NEW; END IF;')], 'updated_at')).toBeNull();
    expect(triggerSetting([trigger('NEW.updated_at_2 := now();')], 'updated_at')).toBeNull();
    expect(triggerSetting([trigger('NEW.updated_at := now();', { someColumns: true })], 'updated_at')).toBeNull();
  });

  it("counts contrib's moddatetime(col)", () => {
    expect(triggerSetting([trigger('moddatetime', { function: 'moddatetime', args: 'updated_at\\000' })], 'updated_at')).toBe('tr');
  });
});
