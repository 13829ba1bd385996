-- offload schema v2: flow control. Times are epoch milliseconds.
-- A queue item may carry up to two concurrency keys with their limits. An item whose key
-- was full when claimed is ``blocked``: out of the ready index until a slot of the key
-- frees, so a saturated key never slows claims for other keys.
ALTER TABLE queue_items ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE queue_items ADD COLUMN concurrency_key2 TEXT;
ALTER TABLE queue_items ADD COLUMN concurrency_limit2 INTEGER;
ALTER TABLE queue_items ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
CREATE INDEX queue_items_ready ON queue_items (due_at) WHERE lease_owner IS NULL AND blocked = 0;
DROP INDEX queue_items_due;
CREATE INDEX queue_items_ckey_leased ON queue_items (concurrency_key)
    WHERE lease_owner IS NOT NULL AND concurrency_key IS NOT NULL;
CREATE INDEX queue_items_ckey2_leased ON queue_items (concurrency_key2)
    WHERE lease_owner IS NOT NULL AND concurrency_key2 IS NOT NULL;
CREATE INDEX queue_items_ckey_ready ON queue_items (concurrency_key, due_at)
    WHERE lease_owner IS NULL AND blocked = 0 AND concurrency_key IS NOT NULL;
CREATE INDEX queue_items_ckey2_ready ON queue_items (concurrency_key2, due_at)
    WHERE lease_owner IS NULL AND blocked = 0 AND concurrency_key2 IS NOT NULL;
CREATE INDEX queue_items_ckey_blocked ON queue_items (concurrency_key, due_at) WHERE blocked = 1;
CREATE INDEX queue_items_ckey2_blocked ON queue_items (concurrency_key2, due_at)
    WHERE blocked = 1;

-- The concurrency keys of a run as JSON [[key, limit], ...]: every RUN item queued for
-- the run later (retries, resumes) inherits them.
ALTER TABLE runs ADD COLUMN concurrency TEXT;

-- GCRA state of throttles and rate limits: the theoretical arrival time per key.
CREATE TABLE flow_gcra (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
);

-- The open debounce per key: its run and that run's queue item, until the item is claimed.
CREATE TABLE flow_debounces (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    first_at INTEGER NOT NULL
);

-- The open event batch per key: its run, queue item and number of events so far.
CREATE TABLE flow_batches (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    first_at INTEGER NOT NULL
);

-- The latest run per singleton key.
CREATE TABLE flow_singletons (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL
);
