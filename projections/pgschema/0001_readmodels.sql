-- The read models in PostgreSQL: the same tables and columns as the SQLite
-- file (see schemaSQL in projections.go), so that every query and Digest
-- are shared. Amounts are canonical decimal text, exactly as in SQLite,
-- so both backends hash the same bytes. Keys that queries order or page
-- by are COLLATE "C": bytewise, as SQLite's BINARY, whatever the
-- database's default collation.
CREATE TABLE checkpoint (
	id       integer PRIMARY KEY CHECK (id = 1),
	position bigint  NOT NULL
);
INSERT INTO checkpoint (id, position) VALUES (1, 0);

CREATE TABLE balances (
	account_id    text COLLATE "C" PRIMARY KEY,
	currency      text   NOT NULL,
	balance       text   NOT NULL,
	debits        text   NOT NULL,
	credits       text   NOT NULL,
	entries       bigint NOT NULL,
	last_position bigint NOT NULL
);

CREATE TABLE entries (
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
	PRIMARY KEY (position, seq)
);
CREATE INDEX entries_by_account ON entries (account_id, time_ns, position, seq);

CREATE TABLE balances_flushed (
	id       integer PRIMARY KEY CHECK (id = 1),
	position bigint  NOT NULL
);
INSERT INTO balances_flushed (id, position) VALUES (1, 0);

CREATE TABLE cases (
	case_id       text COLLATE "C" PRIMARY KEY,
	kind          text COLLATE "C" NOT NULL,
	account_id    text   NOT NULL,
	status        text   NOT NULL,
	opened_ns     bigint NOT NULL,
	due_ns        bigint NOT NULL,
	ended_ns      bigint NOT NULL,
	last_position bigint NOT NULL
);
CREATE INDEX cases_open ON cases (kind, ended_ns, due_ns, case_id);
