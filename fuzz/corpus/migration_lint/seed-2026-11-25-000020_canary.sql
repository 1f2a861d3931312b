-- The canary: each `system.ping` the daemon handles is recorded here, so a
-- health check or a deploy gate can publish a ping (through the outbox) and
-- wait for its row: the round trip outbox → broker → consumer → database.

CREATE TABLE canary_pings (
    id          BIGSERIAL PRIMARY KEY,
    ping_id     UUID NOT NULL UNIQUE,
    event_id    UUID NOT NULL,
    producer    TEXT NOT NULL,
    -- When the ping was raised (the envelope's occurred_at) and when handled.
    sent_at     TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX canary_pings_received ON canary_pings (received_at);
