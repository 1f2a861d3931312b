-- atelier:phase contract
-- atelier:no-transaction
-- atelier:allow drop-column: the column has been unused since 2026-11
-- atelier:bogus
ALTER TABLE sales DROP COLUMN legacy;
CREATE INDEX CONCURRENTLY idx_a ON sales (id);
ALTER TYPE channel ADD VALUE 'sms';
CREATE FUNCTION f() RETURNS trigger AS $body$ BEGIN RAISE 'a;b'; RETURN NEW; END $body$ LANGUAGE plpgsql;
SET lock_timeout = '1s'; /* block ; comment */ UPDATE sales SET x = 'it''s; fine' WHERE "we;ird" = 1;
ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0, ALTER COLUMN d SET NOT NULL;
