-- A token's kind is a column, not a "moat:" name prefix decoded in several
-- places (issue 11): personal access tokens and set-password links share
-- the table.
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'personal';
UPDATE tokens SET kind = 'set_password' WHERE name = 'moat:set-password';
