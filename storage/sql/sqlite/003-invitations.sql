-- 003-invitations.sql (SQLite): invitations made by users (XEP-0401's
-- urn:xmpp:invite#invite, sm/mod_invite.c). Keep the same in both drivers.

-- The account that made an invitation (NULL: the administrator, with
-- hearthctl invite or urn:xmpp:invite#create-account); sm.user-invites
-- bounds how many unexpired ones each user may have.
ALTER TABLE tokens ADD COLUMN inviter TEXT NULL;
CREATE INDEX tokens_inviter ON tokens (inviter);
