-- offload schema v8: paused functions and queues, the audit log, alert rules and states.
-- Times are epoch milliseconds; JSON is TEXT.

-- A paused function or queue: its RUN items are accepted but not started. A claim gives
-- such items back with blocked = 2 (out of the ready index, like a full concurrency key
-- with blocked = 1); resuming sets them back to 0.
CREATE TABLE pauses (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    paused_at INTEGER NOT NULL,
    paused_by TEXT,
    PRIMARY KEY (kind, target)
);
CREATE INDEX queue_items_paused ON queue_items (queue) WHERE blocked = 2;

-- Every operator action: who (API key, dashboard user, CLI), what, on what, when.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    action TEXT NOT NULL,
    target_kind TEXT,
    target_id TEXT,
    related_id TEXT,
    request_id TEXT,
    outcome TEXT NOT NULL DEFAULT 'ok',
    details TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target_id);
CREATE INDEX audit_log_related ON audit_log (related_id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- Alert rules made through /v1/alerts (rules from settings live in the settings).
CREATE TABLE alert_rules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    url TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The current state of each rule; a transition is a compare-and-set on ``status``.
CREATE TABLE alert_states (
    rule_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    value DOUBLE PRECISION,
    since INTEGER NOT NULL,
    evaluated_at INTEGER NOT NULL,
    message TEXT
);

-- Each firing and resolving, with the HTTP-task run that delivers its notification.
CREATE TABLE alert_events (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    rule_name TEXT NOT NULL,
    status TEXT NOT NULL,
    value DOUBLE PRECISION,
    message TEXT NOT NULL,
    run_id TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX alert_events_rule ON alert_events (rule_id, id);
