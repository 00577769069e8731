-- The statement rows up to balances_flushed move to entries_archive at
-- every flush, as in the SQLite file (see schemaSQL in projections.go).
-- PostgreSQL has no clustered tables: the archive's primary key carries
-- every column a statement page returns, so a page is an index-only scan
-- of adjacent index pages; and each flush inserts its rows in key order,
-- so the heap is in account order within each flush interval too.
CREATE TABLE entries_archive (
	account_id    text COLLATE "C" NOT NULL,
	time_ns       bigint   NOT NULL,
	position      bigint   NOT NULL,
	seq           bigint   NOT NULL,
	event_id      text     NOT NULL,
	type          text     NOT NULL,
	amount        text     NOT NULL,
	currency      text     NOT NULL,
	counterparty  text     NOT NULL,
	balance_after text     NOT NULL,
	description   text     NOT NULL,
	ref           text     NOT NULL,
	PRIMARY KEY (account_id, time_ns, position, seq)
		INCLUDE (event_id, type, amount, currency, counterparty, balance_after, description, ref)
);
INSERT INTO entries_archive (account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref)
	SELECT account_id, time_ns, position, seq, event_id, type, amount, currency,
		counterparty, balance_after, description, ref
	FROM entries WHERE position <= (SELECT position FROM balances_flushed WHERE id = 1)
	ORDER BY account_id, time_ns, position, seq;
DELETE FROM entries WHERE position <= (SELECT position FROM balances_flushed WHERE id = 1);
