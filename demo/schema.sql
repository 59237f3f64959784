-- A small shop for the demo: customers, orders (with a soft-delete column) and order items (composite key).
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;

CREATE TYPE demo.order_status AS ENUM ('open', 'paid', 'shipped', 'cancelled');

CREATE TABLE demo.customers (
  id          bigint PRIMARY KEY,
  name        text NOT NULL,
  email       text,
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE demo.orders (
  id           bigint PRIMARY KEY,
  customer_id  bigint NOT NULL REFERENCES demo.customers (id),
  status       demo.order_status NOT NULL DEFAULT 'open',
  amount       numeric(12, 2) NOT NULL,
  details      jsonb,
  updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  deleted_at   timestamptz
);

CREATE TABLE demo.order_items (
  order_id    bigint NOT NULL REFERENCES demo.orders (id),
  line        int NOT NULL,
  sku         text NOT NULL,
  quantity    int NOT NULL,
  unit_price  numeric(10, 2) NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (order_id, line)
);

-- Keyset paging reads (updated_at, primary key) ranges: one index each makes every page an index range scan.
CREATE INDEX ON demo.customers (updated_at, id);
CREATE INDEX ON demo.orders (updated_at, id);
CREATE INDEX ON demo.order_items (updated_at, order_id, line);

-- updated_at moves on every change, as the watermark requires.
CREATE FUNCTION demo.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := clock_timestamp();
  RETURN NEW;
END $$;
CREATE TRIGGER touch BEFORE UPDATE ON demo.customers FOR EACH ROW EXECUTE FUNCTION demo.touch();
CREATE TRIGGER touch BEFORE UPDATE ON demo.orders FOR EACH ROW EXECUTE FUNCTION demo.touch();
CREATE TRIGGER touch BEFORE UPDATE ON demo.order_items FOR EACH ROW EXECUTE FUNCTION demo.touch();

INSERT INTO demo.customers (id, name, email)
SELECT g, 'Customer ' || g, 'customer' || g || '@example.com' FROM generate_series(1, 500) g;

INSERT INTO demo.orders (id, customer_id, status, amount, details)
SELECT g, 1 + (g % 500), (ARRAY['open', 'paid', 'shipped']::demo.order_status[])[1 + g % 3],
       round((10 + (g * 7919) % 99000 / 100.0)::numeric, 2),
       jsonb_build_object('channel', (ARRAY['web', 'store', 'phone'])[1 + g % 3], 'gift', g % 10 = 0)
FROM generate_series(1, 3000) g;

INSERT INTO demo.order_items (order_id, line, sku, quantity, unit_price)
SELECT o, l, 'SKU-' || ((o * 31 + l) % 200), 1 + (o + l) % 4, round((1 + ((o * 13 + l) % 5000) / 100.0)::numeric, 2)
FROM generate_series(1, 3000) o, generate_series(1, 3) l;
