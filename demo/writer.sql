-- One round of changes: new customers and orders, updates, soft and hard deletes. The demo and the compose
-- writer service run it repeatedly.
INSERT INTO demo.customers (id, name, email)
SELECT COALESCE(max(id), 0) + 1, 'Customer ' || (COALESCE(max(id), 0) + 1), NULL FROM demo.customers;

INSERT INTO demo.orders (id, customer_id, amount, details)
SELECT COALESCE(max(id), 0) + g, 1 + (random() * 499)::int, round((random() * 500)::numeric, 2), '{"channel": "web"}'
FROM demo.orders, generate_series(1, 5) g GROUP BY g;

UPDATE demo.orders SET status = 'shipped'
WHERE id IN (SELECT id FROM demo.orders WHERE status = 'paid' AND deleted_at IS NULL ORDER BY random() LIMIT 20);

UPDATE demo.orders SET status = 'paid', amount = amount + 0.01
WHERE id IN (SELECT id FROM demo.orders WHERE status = 'open' AND deleted_at IS NULL ORDER BY random() LIMIT 20);

UPDATE demo.orders SET status = 'cancelled', deleted_at = clock_timestamp()
WHERE id IN (SELECT id FROM demo.orders WHERE deleted_at IS NULL ORDER BY random() LIMIT 3);

UPDATE demo.order_items SET quantity = quantity + 1
WHERE (order_id, line) IN (SELECT order_id, line FROM demo.order_items ORDER BY random() LIMIT 30);

DELETE FROM demo.order_items
WHERE (order_id, line) IN (SELECT order_id, line FROM demo.order_items WHERE line = 3 ORDER BY random() LIMIT 5);
