-- One round of changes for the MariaDB demo: new customers and orders, updates, soft and hard deletes.
INSERT INTO customers (id, name, email)
SELECT COALESCE(MAX(id), 0) + 1, CONCAT('Customer ', COALESCE(MAX(id), 0) + 1), NULL FROM customers;

INSERT INTO orders (id, customer_id, amount, details)
SELECT m.top + s.seq, 1 + FLOOR(RAND() * 499), ROUND(RAND() * 500, 2), '{"channel": "web"}'
FROM (SELECT COALESCE(MAX(id), 0) AS top FROM orders) m, seq_1_to_5 s;

UPDATE orders SET status = 'shipped' WHERE status = 'paid' AND deleted_at IS NULL ORDER BY RAND() LIMIT 20;

UPDATE orders SET status = 'paid', amount = amount + 0.01 WHERE status = 'open' AND deleted_at IS NULL ORDER BY RAND() LIMIT 20;

UPDATE orders SET status = 'cancelled', deleted_at = CURRENT_TIMESTAMP(6) WHERE deleted_at IS NULL ORDER BY RAND() LIMIT 3;

UPDATE order_items SET quantity = quantity + 1 ORDER BY RAND() LIMIT 30;

DELETE FROM order_items WHERE line = 3 ORDER BY RAND() LIMIT 5;
