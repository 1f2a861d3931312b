-- PostgreSQL alone, a sale as POST /api/v1/sales makes it: the caller's
-- account (the auth check), then in one transaction the business, the
-- product, the sale's id, the invoice number (the business's numbering row
-- stays locked until commit), the sale, its line and its sale.created outbox
-- row. Run by daemon/benches/http.rs with pgbench on the bench's database:
-- the ceiling the API's sales are measured against. -D first=.. -D last=..
-- give the businesses' ids (one cashier and one product each).
\set b random(:first, :last)
SELECT id AS uid FROM users WHERE business_id = :b AND role = 'cashier' LIMIT 1 \gset
BEGIN;
SELECT id, name, currency, created_at FROM businesses WHERE id = :b;
SELECT id AS pid, unit_price_minor FROM products WHERE business_id = :b LIMIT 1 \gset
SELECT nextval('sales_id_seq') AS sid \gset
INSERT INTO invoice_sequences (business_id, period, last_no) VALUES (:b, '209901', 1)
  ON CONFLICT (business_id, period) DO UPDATE SET last_no = invoice_sequences.last_no + 1 RETURNING last_no \gset
INSERT INTO sales (id, business_id, invoice_no, status, channel, total_minor, currency, created_by, finalized_at)
  VALUES (:sid, :b, 'INV-209901-' || :last_no::text, 'final', 'walk_in', 2 * :unit_price_minor, 'USD', :uid, now()) RETURNING *;
INSERT INTO sale_lines (business_id, sale_id, line_no, product_id, quantity, unit_price_minor, line_total_minor)
  VALUES (:b, :sid, 1, :pid, 2, :unit_price_minor, 2 * :unit_price_minor) RETURNING *;
INSERT INTO outbox (event_id, event_type, business_id, envelope)
  VALUES (gen_random_uuid(), 'sale.created', :b, jsonb_build_object(
    'type', 'sale.created', 'version', 1, 'occurred_at', now(), 'business_id', :b::bigint,
    'producer', 'pgbench', 'correlation_id', gen_random_uuid(),
    'data', jsonb_build_object('sale_id', :sid::bigint, 'invoice_no', 'INV-209901-' || :last_no::text, 'channel', 'walk_in',
      'total_minor', 2 * :unit_price_minor::bigint, 'currency', 'USD',
      'lines', jsonb_build_array(jsonb_build_object('product_id', :pid::bigint, 'quantity', 2,
        'unit_price_minor', :unit_price_minor::bigint, 'requires_production', false)))));
COMMIT;
