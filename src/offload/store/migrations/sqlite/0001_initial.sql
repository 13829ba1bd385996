-- offload schema v1 (SQLite). Times are epoch milliseconds; JSON is TEXT.
CREATE TABLE apps (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    sdk TEXT,
    framework TEXT,
    app_version TEXT,
    checksum TEXT,
    sync_error TEXT,
    synced_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE functions (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX functions_app ON functions (app_id);

CREATE TABLE events (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    user_data TEXT,
    ts INTEGER NOT NULL,
    external_id TEXT UNIQUE,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_name ON events (name, id);

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    app_id TEXT,
    function_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    event_ids TEXT NOT NULL DEFAULT '[]',
    input TEXT,
    output TEXT,
    error TEXT,
    queue TEXT,
    correlation_id TEXT,
    replay_of TEXT,
    idempotency_key TEXT,
    state TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_function ON runs (function_id, id);
CREATE INDEX runs_queue ON runs (queue, id);
CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE run_events (
    event_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (event_id, run_id)
);
CREATE INDEX run_events_run ON run_events (run_id);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    started_at INTEGER,
    ended_at INTEGER,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE queue_items (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    run_id TEXT,
    due_at INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    queue TEXT NOT NULL DEFAULT 'default',
    concurrency_key TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_token TEXT,
    lease_expires_at INTEGER,
    expiries INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX queue_items_due ON queue_items (due_at) WHERE lease_owner IS NULL;
CREATE INDEX queue_items_leased ON queue_items (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX queue_items_run ON queue_items (run_id);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE waits (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    event_name TEXT,
    expression TEXT,
    correlation_id TEXT,
    trigger TEXT,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX waits_event ON waits (event_name);
CREATE INDEX waits_correlation ON waits (correlation_id);
CREATE INDEX waits_run ON waits (run_id);

CREATE TABLE cron_ticks (
    function_id TEXT NOT NULL,
    tick_at INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (function_id, tick_at)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
