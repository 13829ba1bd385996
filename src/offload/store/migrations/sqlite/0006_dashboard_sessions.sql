-- Dashboard sessions held server-side, so logging out (or changing the dashboard
-- password) ends a session even if its signed cookie was copied. A session is valid
-- only while its row exists, has not expired, and names the current credential.
CREATE TABLE dashboard_sessions (
    id TEXT PRIMARY KEY,
    login TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions (expires_at);
