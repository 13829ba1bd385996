-- Every attempt of every step: a JSON list of {attempt, status, started_at, ended_at,
-- error}, oldest first (GET /v1/runs/{id} shows it as steps[].history).
ALTER TABLE steps ADD COLUMN history TEXT;

-- Fields of an event other than name, data, id, ts and user, as the sender sent them
-- (the schema version "v", and whatever else an SDK adds): a JSON object or NULL.
ALTER TABLE events ADD COLUMN extra TEXT;
