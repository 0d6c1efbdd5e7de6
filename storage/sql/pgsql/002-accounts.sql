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
