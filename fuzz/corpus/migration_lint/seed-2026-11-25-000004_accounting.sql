-- Accounting: accounts with balances and their transactions. A credit adds to
-- an account's balance, a debit takes from it. A transaction's reference is
-- unique per business, so a step's expense ('production_step:<id>') can be
-- booked only once.

CREATE TABLE accounts (
    id            BIGSERIAL PRIMARY KEY,
    business_id   BIGINT NOT NULL REFERENCES businesses (id),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency      CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_minor BIGINT NOT NULL DEFAULT 0,
    is_default    BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, name)
);
-- At most one default account (where expenses are booked) per business.
CREATE UNIQUE INDEX accounts_one_default ON accounts (business_id) WHERE is_default;

CREATE TABLE account_transactions (
    id           BIGSERIAL PRIMARY KEY,
    business_id  BIGINT NOT NULL,
    account_id   BIGINT NOT NULL,
    direction    TEXT NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    category     TEXT NOT NULL CHECK (length(category) BETWEEN 1 AND 100),
    reference    TEXT,
    description  TEXT,
    occurred_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by   BIGINT,
    UNIQUE (business_id, reference),
    FOREIGN KEY (business_id, account_id) REFERENCES accounts (business_id, id),
    FOREIGN KEY (business_id, created_by) REFERENCES users (business_id, id)
);
CREATE INDEX account_transactions_account ON account_transactions (business_id, account_id, occurred_at DESC);
CREATE INDEX account_transactions_category ON account_transactions (business_id, category, occurred_at);
