-- Works (SPEC §13, §17): the work a request names. NULL means the built-in `text` (every
-- record made before works existed). A nullable column without a default: no table
-- rewrite on either backend.
ALTER TABLE requests ADD COLUMN work TEXT;
