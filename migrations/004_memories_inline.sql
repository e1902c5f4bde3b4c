-- Keep a memory's row in its page up to 4 KB. A row with a 384-dimension vector (1.5 KB) is past the 2 KB at which
-- Postgres starts to TOAST: it pglz-compressed the content and search terms, then still moved the vector out to the
-- TOAST table, on every save. With the target at 4 KB nothing is compressed or moved until a row is over 4 KB:
-- Postgres CPU per saved memory fell by 5-13% (batches of 500, README "Row storage") and the table grew by about
-- 9%, since text is no longer compressed. Larger rows are compressed and moved as before. New rows only.
ALTER TABLE memories SET (toast_tuple_target = 4096);
