-- Who made each change (a token's role, id and name, or `local` for the
-- command line on the database itself), and the changes of one object
-- (a VM, a node, an address) found by its name.
ALTER TABLE changes ADD COLUMN actor TEXT;
CREATE INDEX changes_subject ON changes (subject, id);
