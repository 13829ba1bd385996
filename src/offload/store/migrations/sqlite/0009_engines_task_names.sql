-- Engine processes announce themselves here and beat every few seconds, so the
-- dashboard can show which are alive and what they hold.
CREATE TABLE engines (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
-- An optional label of an HTTP task (POST /v1/tasks "name"), filterable.
ALTER TABLE runs ADD COLUMN name TEXT;
CREATE INDEX runs_name ON runs (name, id) WHERE name IS NOT NULL;
-- The failed view leaves out runs that were replayed: find replays of a run quickly.
CREATE INDEX runs_replay_of ON runs (replay_of) WHERE replay_of IS NOT NULL;
