-- Social channels: each business's WhatsApp/Facebook/Instagram/Telegram
-- accounts, the messages that come in and go out on them, the leads inbound
-- messages raise, and the templates of outbound notifications.

CREATE TABLE social_channels (
    id                      BIGSERIAL PRIMARY KEY,
    business_id             BIGINT NOT NULL REFERENCES businesses (id),
    channel_type            TEXT NOT NULL CHECK (channel_type IN ('whatsapp', 'facebook', 'instagram', 'telegram')),
    account_id              TEXT NOT NULL CHECK (length(account_id) BETWEEN 1 AND 100),
    display_number          TEXT,
    -- Credentials and secrets are never returned by the API nor logged.
    access_token            TEXT,
    webhook_secret          TEXT NOT NULL,
    webhook_secret_previous TEXT,
    verify_token            TEXT,
    active                  BOOLEAN NOT NULL DEFAULT true,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (business_id, id),
    UNIQUE (business_id, channel_type, account_id)
);

CREATE TABLE social_messages (
    id                  BIGSERIAL PRIMARY KEY,
    business_id         BIGINT NOT NULL,
    channel_id          BIGINT,
    channel_type        TEXT NOT NULL CHECK (channel_type IN ('whatsapp', 'facebook', 'instagram', 'telegram', 'log')),
    direction           TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    provider_message_id TEXT,
    customer_id         BIGINT,
    phone               TEXT,
    body                TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('received', 'pending', 'sent', 'delivered', 'read', 'failed')),
    -- Outbound notifications: the event and reference they answer.
    event_type          TEXT,
    reference           TEXT,
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (direction = 'inbound' OR (event_type IS NOT NULL AND reference IS NOT NULL)),
    UNIQUE (business_id, id),
    FOREIGN KEY (business_id, channel_id) REFERENCES social_channels (business_id, id),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id)
);
-- A provider's retries of one message store it once.
CREATE UNIQUE INDEX social_messages_provider_id ON social_messages (channel_id, provider_message_id)
    WHERE provider_message_id IS NOT NULL AND direction = 'inbound';
-- At most one outbound message per (event, reference, recipient).
CREATE UNIQUE INDEX social_messages_one_notification ON social_messages (business_id, event_type, reference, phone)
    WHERE direction = 'outbound';
CREATE INDEX social_messages_business_created ON social_messages (business_id, created_at DESC, id DESC);

CREATE TABLE leads (
    id           BIGSERIAL PRIMARY KEY,
    business_id  BIGINT NOT NULL,
    customer_id  BIGINT NOT NULL,
    message_id   BIGINT NOT NULL,
    channel_type TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'contacted', 'converted', 'lost')),
    note         TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (message_id),
    FOREIGN KEY (business_id, customer_id) REFERENCES customers (business_id, id),
    FOREIGN KEY (business_id, message_id) REFERENCES social_messages (business_id, id)
);
CREATE INDEX leads_business_created ON leads (business_id, created_at DESC);

CREATE TABLE notification_templates (
    id          BIGSERIAL PRIMARY KEY,
    business_id BIGINT NOT NULL REFERENCES businesses (id),
    event_type  TEXT NOT NULL CHECK (event_type IN ('sale.created', 'production.created', 'production.completed', 'payment.received', 'order.ready')),
    body        TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 4096),
    active      BOOLEAN NOT NULL DEFAULT true,
    UNIQUE (business_id, event_type)
);
