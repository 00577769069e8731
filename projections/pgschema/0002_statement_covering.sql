-- A statement page reads only the statement index: it carries every column
-- the page returns, so a page is a range of adjacent index pages
-- (index-only scans) instead of one heap page per row, the heap being in
-- log order. The SQLite file clusters the table by the same key instead;
-- PostgreSQL has no clustered tables. The index is built again from the
-- rows in this migration's transaction.
DROP INDEX entries_by_account;
CREATE INDEX entries_by_account ON entries (account_id, time_ns, position, seq)
	INCLUDE (event_id, type, amount, currency, counterparty, balance_after, description, ref);
