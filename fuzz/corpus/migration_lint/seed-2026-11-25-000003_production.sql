-- Production: the steps a business makes its goods in, production orders (one
-- per sale at most) and their steps, which workers progress and managers cost.

CREATE TABLE production_step_templates (
    id          BIGSERIAL PRIMARY KEY,
    business_id BIGINT NOT NULL REFERENCES businesses (id),
    position    INTEGER NOT NULL CHECK (position > 0),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    UNIQUE (business_id, position)
);

CREATE TABLE production_orders (
    id                BIGSERIAL PRIMARY KEY,
    business_id       BIGINT NOT NULL REFERENCES businesses (id),
    location_id       BIGINT,
    sale_id           BIGINT,
    order_no          TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'completed')),
    total_cost_minor  BIGINT NOT NULL DEFAULT 0 CHECK (total_cost_minor >= 0),
    final_price_minor BIGINT NOT NULL CHECK (final_price_minor >= 0),
    currency          CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at      TIMESTAMPTZ,
    CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    -- Exactly one production order per sale, whoever races to create it.
    UNIQUE (sale_id),
    UNIQUE (business_id, id),
    UNIQUE (business_id, order_no),
    FOREIGN KEY (business_id, sale_id) REFERENCES sales (business_id, id),
    FOREIGN KEY (business_id, location_id) REFERENCES locations (business_id, id)
);
CREATE INDEX production_orders_business_created ON production_orders (business_id, created_at DESC, id DESC);
CREATE INDEX production_orders_business_status ON production_orders (business_id, status);

CREATE TABLE production_steps (
    id               BIGSERIAL PRIMARY KEY,
    business_id      BIGINT NOT NULL,
    order_id         BIGINT NOT NULL,
    position         INTEGER NOT NULL CHECK (position > 0),
    name             TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    step_qty         INTEGER CHECK (step_qty > 0),
    completed_qty    INTEGER NOT NULL DEFAULT 0,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'in_progress', 'completed')),
    assigned_user_id BIGINT,
    cost_minor       BIGINT NOT NULL DEFAULT 0 CHECK (cost_minor >= 0),
    vendor           TEXT,
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- completed_qty stays within 0..=step_qty (and 0 while step_qty is unset).
    CHECK (completed_qty >= 0 AND completed_qty <= coalesce(step_qty, 0)),
    CHECK (status <> 'completed' OR (completed_at IS NOT NULL AND completed_qty = step_qty)),
    CHECK (status = 'pending' OR started_at IS NOT NULL),
    UNIQUE (order_id, position),
    UNIQUE (business_id, id),
    FOREIGN KEY (business_id, order_id) REFERENCES production_orders (business_id, id) ON DELETE CASCADE,
    FOREIGN KEY (business_id, assigned_user_id) REFERENCES users (business_id, id)
);
CREATE INDEX production_steps_assignee ON production_steps (business_id, assigned_user_id, status);
CREATE INDEX production_steps_name ON production_steps (business_id, name);
