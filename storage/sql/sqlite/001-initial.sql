-- 001-initial.sql (SQLite): the collections of issue 3. Keep the tables and
-- columns the same as pgsql/001-initial.sql; a new table with an owner
-- column also goes into ../owner-tables.

-- SCRAM keys, base64 as in common/sasl.h's scram_keys_t; never a password.
CREATE TABLE auth (
    owner TEXT PRIMARY KEY,
    sha1_salt TEXT,
    sha1_iter INTEGER,
    sha1_stored TEXT,
    sha1_server TEXT,
    sha256_salt TEXT,
    sha256_iter INTEGER,
    sha256_stored TEXT,
    sha256_server TEXT,
    created BIGINT NOT NULL -- unix seconds
);

CREATE TABLE roster_items (
    owner TEXT NOT NULL,
    jid TEXT NOT NULL,
    name TEXT NULL,
    subscription TEXT NOT NULL DEFAULT 'none'
        CHECK (subscription IN ('none', 'to', 'from', 'both')),
    ask INTEGER NOT NULL DEFAULT 0,         -- 1: outbound subscribe pending
    preapproved INTEGER NOT NULL DEFAULT 0,
    pending_in TEXT NULL,                   -- the inbound subscribe awaiting an answer (XML)
    groups TEXT NOT NULL DEFAULT '',        -- group names joined by '\n'
    PRIMARY KEY (owner, jid)
);

CREATE TABLE roster_version (
    owner TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);

CREATE TABLE offline (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    stamp BIGINT NOT NULL,                  -- unix milliseconds
    stanza TEXT NOT NULL
);
CREATE INDEX offline_owner_id ON offline (owner, id);

CREATE TABLE vcard (
    owner TEXT PRIMARY KEY,
    data TEXT NOT NULL
);

CREATE TABLE private (
    owner TEXT NOT NULL,
    ns TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (owner, ns)
);

CREATE TABLE blocklist (
    owner TEXT NOT NULL,
    jid TEXT NOT NULL,
    PRIMARY KEY (owner, jid)
);

CREATE TABLE last_activity (
    owner TEXT PRIMARY KEY,
    stamp BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT ''
);
