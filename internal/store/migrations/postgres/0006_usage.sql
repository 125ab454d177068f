-- moat schema version 6 (PostgreSQL): who used which route (issue 14). Times are
-- Unix microseconds; days are whole days since 1970-01-01 UTC. Every
-- instance adds what it counted since its last write, so numbers are added
-- in place and first/last uses take the minimum/maximum. Keep in step with
-- ../sqlite/0006_usage.sql.

-- usage_sessions is one sign-in session's use of one route. session_key is
-- derived from the session's id hash, so these rows, kept for the usage
-- retention, never name a live session.
CREATE TABLE usage_sessions (
	route          TEXT NOT NULL,
	session_key    TEXT NOT NULL,
	email          TEXT NOT NULL,
	provider       TEXT NOT NULL DEFAULT '',
	first_seen     BIGINT NOT NULL DEFAULT 0,
	last_seen      BIGINT NOT NULL DEFAULT 0,
	connected_ms   BIGINT NOT NULL DEFAULT 0,
	active_minutes BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (route, session_key)
);
CREATE INDEX usage_sessions_last_seen ON usage_sessions (last_seen);

-- usage_user_days: a user used a route on a day (one row however many
-- instances saw it), with the minutes their WebSockets carried messages.
CREATE TABLE usage_user_days (
	route          TEXT NOT NULL,
	day            BIGINT NOT NULL,
	email          TEXT NOT NULL,
	active_minutes BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (route, day, email)
);
CREATE INDEX usage_user_days_day ON usage_user_days (day);

-- usage_signins counts sign-ins headed to a route, per day and provider.
CREATE TABLE usage_signins (
	route    TEXT NOT NULL,
	day      BIGINT NOT NULL,
	provider TEXT NOT NULL,
	count    BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (route, day, provider)
);
CREATE INDEX usage_signins_day ON usage_signins (day);
