-- The demo shop for MariaDB/MySQL (`npm run demo -- --source mariadb`): customers, orders (with a soft-delete
-- column) and order items (composite key). ON UPDATE CURRENT_TIMESTAMP(6) moves the watermark on every change.
DROP TABLE IF EXISTS order_items;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;

CREATE TABLE customers (
  id          bigint PRIMARY KEY,
  name        varchar(100) NOT NULL,
  email       varchar(200),
  created_at  timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at  timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY by_watermark (updated_at, id)
);

CREATE TABLE orders (
  id           bigint PRIMARY KEY,
  customer_id  bigint NOT NULL REFERENCES customers (id),
  status       enum('open', 'paid', 'shipped', 'cancelled') NOT NULL DEFAULT 'open',
  amount       decimal(12, 2) NOT NULL,
  details      json,
  updated_at   timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  deleted_at   timestamp(6) NULL,
  KEY by_watermark (updated_at, id)
);

CREATE TABLE order_items (
  order_id    bigint NOT NULL REFERENCES orders (id),
  line        int NOT NULL,
  sku         varchar(20) NOT NULL,
  quantity    int NOT NULL,
  unit_price  decimal(10, 2) NOT NULL,
  updated_at  timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  PRIMARY KEY (order_id, line),
  KEY by_watermark (updated_at, order_id, line)
);

INSERT INTO customers (id, name, email)
SELECT seq, CONCAT('Customer ', seq), CONCAT('customer', seq, '@example.com') FROM seq_1_to_500;

INSERT INTO orders (id, customer_id, status, amount, details)
SELECT seq, 1 + seq % 500, ELT(1 + seq % 3, 'open', 'paid', 'shipped'), ROUND(10 + ((seq * 7919) % 99000) / 100.0, 2),
       JSON_OBJECT('channel', ELT(1 + seq % 3, 'web', 'store', 'phone'), 'gift', seq % 10 = 0)
FROM seq_1_to_3000;

INSERT INTO order_items (order_id, line, sku, quantity, unit_price)
SELECT o.seq, l.seq, CONCAT('SKU-', (o.seq * 31 + l.seq) % 200), 1 + (o.seq + l.seq) % 4, ROUND(1 + ((o.seq * 13 + l.seq) % 5000) / 100.0, 2)
FROM seq_1_to_3000 o, seq_1_to_3 l;
