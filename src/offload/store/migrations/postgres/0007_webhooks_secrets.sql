-- Inbound provider webhooks, their accepted deliveries, encrypted secrets, and the
-- correlation id and trace context events carry to the runs they start.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    verify TEXT NOT NULL,
    secret TEXT,
    previous_secret TEXT,
    previous_until BIGINT,
    event TEXT NOT NULL,
    forward TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per accepted delivery: the dedupe record (provider delivery id) and the
-- audit copy of the raw body and the headers that were verified.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    event_id TEXT,
    event_name TEXT,
    run_id TEXT,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    body_base64 INTEGER NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL,
    UNIQUE (webhook_id, delivery_id)
);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);

CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    ciphertext TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

ALTER TABLE events ADD COLUMN correlation_id TEXT;
ALTER TABLE events ADD COLUMN traceparent TEXT;
CREATE INDEX runs_correlation ON runs (correlation_id, id) WHERE correlation_id IS NOT NULL;
