-- The global log: one row per event. position is assigned by the writer
-- under a transaction-scoped advisory lock (see writer.go), gap-free and
-- in commit order; (stream, version) and id are unique.
CREATE TABLE events (
	position        bigint      PRIMARY KEY,
	stream          text        NOT NULL,
	version         bigint      NOT NULL,
	id              text        NOT NULL,
	type            text        NOT NULL,
	schema_version  integer     NOT NULL,
	-- occurred_at holds the instant to the microsecond, occurred_ns the
	-- nanoseconds below it, since the hash covers the full precision.
	occurred_at     timestamptz NOT NULL,
	occurred_ns     smallint    NOT NULL,
	causation_id    text        NOT NULL,
	correlation_id  text        NOT NULL,
	idempotency_key text        NOT NULL,
	payload         bytea       NOT NULL,
	prev_hash       bytea       NOT NULL,
	hash            bytea       NOT NULL,
	CONSTRAINT events_stream_version UNIQUE (stream, version),
	CONSTRAINT events_id UNIQUE (id),
	CONSTRAINT events_version_positive CHECK (version >= 1 AND position >= 1),
	CONSTRAINT events_occurred_ns CHECK (occurred_ns BETWEEN 0 AND 999)
);

-- The retention rule (R2) in the database: every UPDATE, DELETE and
-- TRUNCATE of events fails, whoever sends it. Statement-level, so that it
-- fires even when no row matches.
CREATE FUNCTION payledger_events_retained() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'payledger: events are retained: % on events refused', TG_OP
		USING ERRCODE = 'PL002';
END;
$$;

CREATE TRIGGER events_retained
	BEFORE UPDATE OR DELETE OR TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION payledger_events_retained();

-- Snapshots: derived state beside the log, replaced by later versions.
CREATE TABLE snapshots (
	stream     text    PRIMARY KEY,
	version    bigint  NOT NULL,
	event_hash bytea   NOT NULL,
	schema     integer NOT NULL,
	payload    bytea   NOT NULL
);
