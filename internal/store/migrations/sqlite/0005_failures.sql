-- moat schema version 5 (SQLite): failure counters that every instance
-- shares, for the sign-in throttles when counters: names no Redis. Times
-- are Unix microseconds. Keep in step with ../postgres/0005_failures.sql.

-- failures counts failed attempts under a key (an account, a client
-- address, both): count is forgotten at expires_at (the last failure plus
-- the caller's window), a lock holds until locked_until. A row with
-- neither left is swept.
CREATE TABLE failures (
	key          TEXT PRIMARY KEY,
	count        INTEGER NOT NULL,
	last_at      INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	locked_until INTEGER NOT NULL
);
CREATE INDEX failures_expires_at ON failures (expires_at);
