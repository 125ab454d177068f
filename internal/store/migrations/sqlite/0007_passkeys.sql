-- moat schema version 7 (SQLite): passkeys (WebAuthn credentials) of the
-- built-in directory's users, and the ceremony challenges already used.
-- Times are Unix microseconds, 0 = never. Keep in step with
-- ../postgres/0007_passkeys.sql.

-- passkeys holds one row per credential. credential_id is the
-- authenticator's id (base64url), unique across users; rp_id is the host
-- the passkey was made on, the only one it signs for. record is the
-- credential record (public key, flags, transports), sealed with the
-- instance key, so a database writer cannot plant a passkey. sign_count is
-- kept apart from it so one conditional UPDATE accepts a counter once.
CREATE TABLE passkeys (
	id            TEXT PRIMARY KEY,
	user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	credential_id TEXT NOT NULL UNIQUE,
	rp_id         TEXT NOT NULL,
	name          TEXT NOT NULL DEFAULT '',
	record        BLOB NOT NULL,
	sign_count    INTEGER NOT NULL DEFAULT 0,
	created_at    INTEGER NOT NULL,
	last_used     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- passkey_challenges remembers the challenges of finished ceremonies until
-- they would have expired anyway, so a challenge finishes one ceremony on
-- whichever instance it reaches first.
CREATE TABLE passkey_challenges (
	hash       TEXT PRIMARY KEY,
	expires_at INTEGER NOT NULL
);
CREATE INDEX passkey_challenges_expires ON passkey_challenges (expires_at);
