-- The lease of the exclusive writer (Options.Exclusive). Open holds a
-- session advisory lock and raises epoch under the position lock; each of
-- its write transactions checks, under the position lock, that epoch is
-- still its own. A process whose lock went (its connection dropped) and
-- whose lease another process then took can no longer write.
CREATE TABLE writer_lease (
	singleton boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	epoch     bigint      NOT NULL,
	holder    text        NOT NULL,
	taken_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO writer_lease (epoch, holder) VALUES (0, '');
