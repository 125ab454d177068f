-- moat schema version 3 (SQLite): what clustered parts share besides
-- users and sessions. Times are Unix microseconds. Keep in step with
-- ../postgres/0003_blobs_locks.sql.

-- blobs are small named values every instance reads and writes: TLS
-- certificates and keys, the ACME account, challenge answers. Keys are
-- slash-separated paths, such as certificates/<ca>/<host>/<host>.crt.
CREATE TABLE blobs (
	key      TEXT PRIMARY KEY,
	value    BLOB NOT NULL,
	modified INTEGER NOT NULL
);

-- locks are named, held by one owner until expires_at unless refreshed, so
-- that one instance orders or renews a certificate and a crashed holder
-- cannot block the others for longer than the lease.
CREATE TABLE locks (
	name       TEXT PRIMARY KEY,
	owner      TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);
