-- Catalogue and sales: products, customers, sales with their lines, payments.
-- Money is integer minor units with a currency, never floats.

CREATE TABLE products (
    id                  BIGSERIAL PRIMARY KEY,
    business_id         BIGINT NOT NULL REFERENCES businesses (id),
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    sku                 TEXT,
    unit_price_minor    BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    currency            CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    requires_production BOOLEAN NOT NULL DEFAULT false,
    active              BOOLEAN NOT NULL DEFAULT true,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, sku)
);

CREATE TABLE customers (
    id          BIGSERIAL PRIMARY KEY,
    business_id BIGINT NOT NULL REFERENCES businesses (id),
    name        TEXT,
    phone       TEXT CHECK (phone ~ '^\+?[0-9]{5,20}$'),
    email       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, phone)
);

-- Invoice numbers run per business and month: INV-202601-0001.
CREATE TABLE invoice_sequences (
    business_id BIGINT NOT NULL REFERENCES businesses (id),
    period      CHAR(6) NOT NULL,
    last_no     INTEGER NOT NULL CHECK (last_no > 0),
    PRIMARY KEY (business_id, period)
);

CREATE TABLE sales (
    id           BIGSERIAL PRIMARY KEY,
    business_id  BIGINT NOT NULL REFERENCES businesses (id),
    location_id  BIGINT,
    customer_id  BIGINT,
    invoice_no   TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('draft', 'final')),
    channel      TEXT NOT NULL CHECK (channel IN ('web', 'mobile', 'walk_in', 'whatsapp', 'facebook', 'instagram', 'telegram')),
    total_minor  BIGINT NOT NULL CHECK (total_minor >= 0),
    currency     CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    notes        TEXT,
    created_by   BIGINT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finalized_at TIMESTAMPTZ,
    CHECK ((status = 'final') = (finalized_at IS NOT NULL)),
    UNIQUE (business_id, id),
    UNIQUE (business_id, invoice_no),
    FOREIGN KEY (business_id, location_id) REFERENCES locations (business_id, id),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id),
    FOREIGN KEY (business_id, created_by) REFERENCES users (business_id, id)
);
CREATE INDEX sales_business_created ON sales (business_id, created_at DESC, id DESC);
CREATE INDEX sales_business_status ON sales (business_id, status);
CREATE INDEX sales_customer ON sales (business_id, customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE sale_lines (
    id               BIGSERIAL PRIMARY KEY,
    business_id      BIGINT NOT NULL,
    sale_id          BIGINT NOT NULL,
    line_no          INTEGER NOT NULL CHECK (line_no > 0),
    product_id       BIGINT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor BIGINT NOT NULL CHECK (line_total_minor = quantity * unit_price_minor),
    UNIQUE (sale_id, line_no),
    FOREIGN KEY (business_id, sale_id) REFERENCES sales (business_id, id) ON DELETE CASCADE,
    FOREIGN KEY (business_id, product_id) REFERENCES products (business_id, id)
);
CREATE INDEX sale_lines_product ON sale_lines (business_id, product_id);

CREATE TABLE payments (
    id           BIGSERIAL PRIMARY KEY,
    business_id  BIGINT NOT NULL,
    sale_id      BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    method       TEXT NOT NULL CHECK (length(method) BETWEEN 1 AND 50),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by   BIGINT,
    FOREIGN KEY (business_id, sale_id) REFERENCES sales (business_id, id),
    FOREIGN KEY (business_id, created_by) REFERENCES users (business_id, id)
);
CREATE INDEX payments_sale ON payments (business_id, sale_id);
