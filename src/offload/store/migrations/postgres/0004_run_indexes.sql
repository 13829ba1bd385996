-- Keep the dashboard's overview and the metrics scrape fast on large run tables:
-- runs created per minute (created_at) and runs by function and status.
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_function_status ON runs (function_id, status);
