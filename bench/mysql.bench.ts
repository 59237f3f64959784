/** `npm run bench:mysql`: the MySQL/MariaDB backfill beside a raw keyset read; see bench/mysql-backfill.ts. */
import { mysqlBackfillBench } from './mysql-backfill.js';

// Exits explicitly: a pipeline pass leaves Redis connections open (as the Postgres benches' passes do).
mysqlBackfillBench().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
