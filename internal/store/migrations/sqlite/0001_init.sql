-- moat schema version 1 (SQLite). Times are Unix microseconds, 0 = never.
-- Keep in step with ../postgres/0001_init.sql: one schema, two dialects.
CREATE TABLE users (
	id                   TEXT PRIMARY KEY,
	email                TEXT NOT NULL UNIQUE,
	name                 TEXT NOT NULL DEFAULT '',
	password_hash        TEXT NOT NULL DEFAULT '',
	disabled             INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
	created_at           INTEGER NOT NULL,
	updated_at           INTEGER NOT NULL,
	last_login_at        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE user_groups (
	user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	grp     TEXT NOT NULL,
	PRIMARY KEY (user_id, grp)
);
CREATE INDEX user_groups_grp ON user_groups (grp);

-- sessions has no foreign key to users: deleting a user revokes its
-- sessions instead of deleting them, so RevokedSince still reports them and
-- every instance closes their WebSockets.
CREATE TABLE sessions (
	id_hash       TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL,
	email         TEXT NOT NULL DEFAULT '',
	provider      TEXT NOT NULL DEFAULT '',
	groups_json   TEXT NOT NULL DEFAULT '[]',
	mfa           INTEGER NOT NULL DEFAULT 0 CHECK (mfa IN (0, 1)),
	client_ip     TEXT NOT NULL DEFAULT '',
	user_agent    TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	last_seen     INTEGER NOT NULL DEFAULT 0,
	expires_at    INTEGER NOT NULL,
	revoked_at    INTEGER NOT NULL DEFAULT 0,
	refresh_token BLOB NOT NULL DEFAULT x'',
	auth_time     INTEGER NOT NULL DEFAULT 0,
	-- hd: the Workspace domain an SSO provider vouched for (domain: members)
	hosted_domain TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_revoked ON sessions (revoked_at);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE totp (
	user_id    TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
	secret     BLOB NOT NULL,
	confirmed  INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1)),
	last_step  INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
);

CREATE TABLE totp_recovery (
	user_id TEXT NOT NULL REFERENCES totp(user_id) ON DELETE CASCADE,
	hash    TEXT NOT NULL,
	PRIMARY KEY (user_id, hash)
);

CREATE TABLE tokens (
	id         TEXT PRIMARY KEY,
	hash       TEXT NOT NULL UNIQUE,
	user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name       TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER NOT NULL DEFAULT 0,
	last_used  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE signing_keys (
	id          TEXT PRIMARY KEY,
	algorithm   TEXT NOT NULL,
	public_key  BLOB NOT NULL,
	private_key BLOB NOT NULL,
	created_at  INTEGER NOT NULL,
	retire_at   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE audit_events (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,
	actor     TEXT NOT NULL DEFAULT '',
	action    TEXT NOT NULL,
	subject   TEXT NOT NULL DEFAULT '',
	client_ip TEXT NOT NULL DEFAULT '',
	detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_time ON audit_events (time);
CREATE INDEX audit_subject ON audit_events (subject, time);
CREATE INDEX audit_action ON audit_events (action, time);
