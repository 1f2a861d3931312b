-- Operations: the transactional outbox, the handlers' exactly-once ledger, the
-- dead-letter store with its replay history, and the deployment record.

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    business_id  BIGINT,
    envelope     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
-- The relay reads unpublished rows in creation order.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Wakes the relay as soon as a row commits.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atelier_outbox', NEW.id::text);
    RETURN NEW;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_notify();

CREATE TABLE processed_events (
    handler      TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);

CREATE TABLE dead_letters (
    id              BIGSERIAL PRIMARY KEY,
    -- Set by the daemon when it dead-letters a message: ingesting the same
    -- dead letter twice (a redelivery of the DLQ) keeps one row.
    dead_letter_key UUID NOT NULL UNIQUE,
    handler         TEXT NOT NULL,
    event_id        UUID,
    event_type      TEXT,
    body            BYTEA NOT NULL,
    headers         JSONB NOT NULL DEFAULT '{}',
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    first_failed_at TIMESTAMPTZ NOT NULL,
    last_failed_at  TIMESTAMPTZ NOT NULL,
    last_error      TEXT NOT NULL,
    error_kind      TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'replaying', 'replayed', 'archived')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_status ON dead_letters (status, created_at);
CREATE INDEX dead_letters_fingerprint ON dead_letters (fingerprint, created_at);
CREATE INDEX dead_letters_handler_type ON dead_letters (handler, event_type);

CREATE TABLE dead_letter_replays (
    id             BIGSERIAL PRIMARY KEY,
    dead_letter_id BIGINT NOT NULL REFERENCES dead_letters (id) ON DELETE CASCADE,
    replay_id      UUID NOT NULL UNIQUE,
    actor          TEXT NOT NULL,
    target_queue   TEXT NOT NULL,
    requested_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ
);
CREATE INDEX dead_letter_replays_letter ON dead_letter_replays (dead_letter_id);

CREATE TABLE deployments (
    id                     BIGSERIAL PRIMARY KEY,
    version                TEXT NOT NULL,
    slot                   TEXT NOT NULL CHECK (slot IN ('blue', 'green')),
    status                 TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'rolled_back')),
    actor                  TEXT NOT NULL,
    started_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at            TIMESTAMPTZ,
    checks                 JSONB NOT NULL DEFAULT '[]',
    error                  TEXT,
    previous_deployment_id BIGINT REFERENCES deployments (id),
    CHECK ((status = 'running') = (finished_at IS NULL))
);
-- The deploy lock: at most one deployment runs at a time.
CREATE UNIQUE INDEX deployments_one_running ON deployments ((true)) WHERE status = 'running';
