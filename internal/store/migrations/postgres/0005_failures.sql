-- moat schema version 5 (PostgreSQL): failure counters that every instance
-- shares, for the sign-in throttles when counters: names no Redis. Times
-- are Unix microseconds. Keep in step with ../sqlite/0005_failures.sql.

-- failures counts failed attempts under a key (an account, a client
-- address, both): count is forgotten at expires_at (the last failure plus
-- the caller's window), a lock holds until locked_until. A row with
-- neither left is swept.
CREATE TABLE failures (
	key          TEXT PRIMARY KEY,
	count        BIGINT NOT NULL,
	last_at      BIGINT NOT NULL,
	expires_at   BIGINT NOT NULL,
	locked_until BIGINT NOT NULL
);
CREATE INDEX failures_expires_at ON failures (expires_at);
