-- 002-accounts.sql (PostgreSQL): the account lifecycle of issue 9. Keep the
-- tables and columns the same as sqlite/002-accounts.sql.

-- A disabled account keeps its data but may not log in (c2s refuses it with
-- the SASL failure account-disabled); the time its last session started.
ALTER TABLE auth ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0; -- 1: disabled
ALTER TABLE auth ADD COLUMN last_login BIGINT NULL;              -- unix seconds

-- The message of the day of each domain (XEP-0133 set-motd), sent to every
-- session at its first available presence.
CREATE TABLE motd (
    domain TEXT PRIMARY KEY,
    text TEXT NOT NULL
);

-- One-time tokens of hearthctl invite and reset (XEP-0401, XEP-0445),
-- shared by every c2s: only a hash of each is kept. An invitation lets one
-- in-band registration through, of owner when it names one (the name is
-- reserved meanwhile); a reset lets owner set a new password by
-- registering its own name. A token is deleted when used.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,                  -- SHA-256 of the token, hex
    kind TEXT NOT NULL CHECK (kind IN ('invite', 'reset')),
    domain TEXT NOT NULL,
    owner TEXT NULL,                        -- the account it is for, if any
    expires BIGINT NOT NULL                 -- unix seconds
);
CREATE INDEX tokens_owner ON tokens (owner);
