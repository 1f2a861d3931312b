-- PostgreSQL alone, one sale per statement: the caller's account (the auth
-- check); the business with the sale's id, and the product (pipelined by
-- the API, outside any transaction); then one statement that takes the
-- invoice number (the business's numbering row stays locked until its
-- commit), writes the sale, its line and its sale.created outbox row. Run
-- by daemon/benches/http.rs with pgbench on the bench's database. This was
-- the API's ceiling while it wrote each sale in its own statement; the API
-- now writes concurrent sales together (store::sales_writer), and the gap
-- between this row and the API's is what that buys.
-- -D first=.. -D last=.. give the businesses' ids (one cashier and one
-- product each).
\set b random(:first, :last)
SELECT id AS uid FROM users WHERE business_id = :b AND role = 'cashier' LIMIT 1 \gset
SELECT id, name, currency, created_at, nextval('sales_id_seq') AS sid FROM businesses WHERE id = :b \gset
SELECT id AS pid, unit_price_minor FROM products WHERE business_id = :b LIMIT 1 \gset
WITH number AS (
  INSERT INTO invoice_sequences (business_id, period, last_no) VALUES (:b, '209901', 1)
  ON CONFLICT (business_id, period) DO UPDATE SET last_no = invoice_sequences.last_no + 1
  RETURNING 'INV-' || period || '-' || lpad(last_no::text, greatest(4, length(last_no::text)), '0') AS invoice_no
), sale AS (
  INSERT INTO sales (id, business_id, invoice_no, status, channel, total_minor, currency, created_by, finalized_at)
  SELECT :sid, :b, number.invoice_no, 'final', 'walk_in', 2 * :unit_price_minor, 'USD', :uid, now() FROM number
  RETURNING invoice_no
), lines AS (
  INSERT INTO sale_lines (business_id, sale_id, line_no, product_id, quantity, unit_price_minor, line_total_minor)
  SELECT :b, :sid, l.* FROM unnest(ARRAY[1], ARRAY[:pid::bigint], ARRAY[2], ARRAY[:unit_price_minor::bigint],
    ARRAY[2 * :unit_price_minor::bigint]) AS l
  RETURNING id, line_no
), raised AS (
  INSERT INTO outbox (event_id, event_type, business_id, envelope, created_at)
  SELECT gen_random_uuid(), 'sale.created', :b, jsonb_set(jsonb_build_object(
    'type', 'sale.created', 'version', 1, 'occurred_at', now(), 'business_id', :b::bigint,
    'producer', 'pgbench', 'correlation_id', gen_random_uuid(),
    'data', jsonb_build_object('sale_id', :sid::bigint, 'invoice_no', '', 'channel', 'walk_in',
      'total_minor', 2 * :unit_price_minor::bigint, 'currency', 'USD',
      'lines', jsonb_build_array(jsonb_build_object('product_id', :pid::bigint, 'quantity', 2,
        'unit_price_minor', :unit_price_minor::bigint, 'requires_production', false)))),
    '{data,invoice_no}', to_jsonb(sale.invoice_no)), now() FROM sale
)
SELECT sale.invoice_no, ARRAY(SELECT id FROM lines ORDER BY line_no) FROM sale;
