-- moat schema version 3 (PostgreSQL): what clustered parts share besides
-- users and sessions. Times are Unix microseconds. Keep in step with
-- ../sqlite/0003_blobs_locks.sql.

-- blobs are small named values every instance reads and writes: TLS
-- certificates and keys, the ACME account, challenge answers. Keys are
-- slash-separated paths, such as certificates/<ca>/<host>/<host>.crt.
CREATE TABLE blobs (
	key      TEXT PRIMARY KEY,
	value    BYTEA NOT NULL,
	modified BIGINT NOT NULL
);

-- locks are named, held by one owner until expires_at unless refreshed, so
-- that one instance orders or renews a certificate and a crashed holder
-- cannot block the others for longer than the lease.
CREATE TABLE locks (
	name       TEXT PRIMARY KEY,
	owner      TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
