/** `npm run bench:mysql-cdc`: binlog change data capture throughput; see bench/mysql-binlog.ts. */
import { binlogChangesBench } from './mysql-binlog.js';

// Exits explicitly: a pipeline pass leaves Redis connections open (as the Postgres benches' passes do).
binlogChangesBench().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
