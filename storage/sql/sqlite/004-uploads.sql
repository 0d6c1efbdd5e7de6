-- 004-uploads.sql (SQLite): the files of hearth-upload (XEP-0363 HTTP file
-- upload, components/upload/). Keep the same in both drivers.

-- One row per slot handed out: id is 128 random bits in hex, the file's
-- name on disk (STATEDIR/upload/ID) and in its URL; put_hash the SHA-256
-- (hex) of the token its PUT must carry; content_type '' when the client
-- named none. created, expires and done are Unix seconds: expires is the
-- slot's end until the upload is done (done set), then the file's. Slots
-- count towards the quotas from created on, used or not; the rows go with
-- the account (owner), and the sweep removes the files they leave.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    put_hash TEXT NOT NULL,
    filename TEXT NOT NULL,
    size BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    created BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    done BIGINT NULL
);
CREATE INDEX uploads_owner ON uploads (owner, created);
CREATE INDEX uploads_expires ON uploads (expires);
