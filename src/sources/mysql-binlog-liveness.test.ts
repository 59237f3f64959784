import { describe, expect, it } from 'vitest';
import { heartbeatPeriodSql } from './mysql-binlog-liveness.js';

describe('heartbeatPeriodSql', () => {
  it('sets the heartbeat period in nanoseconds, as the server reads it', () => {
    expect(heartbeatPeriodSql(30_000)).toBe('SET @master_heartbeat_period = 30000000000, @source_heartbeat_period = 30000000000');
    expect(heartbeatPeriodSql(1000)).toBe('SET @master_heartbeat_period = 1000000000, @source_heartbeat_period = 1000000000');
  });

  it('never asks for a period of 0, which the server reads as no heartbeats at all', () => {
    expect(heartbeatPeriodSql(0.2)).toBe('SET @master_heartbeat_period = 1000000, @source_heartbeat_period = 1000000');
  });
});
