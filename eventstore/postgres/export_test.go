package postgres

// SetBeforeCommit installs a hook the writer runs after writing a
// transaction's rows and before committing it. Set it before the first
// append.
func (s *Store) SetBeforeCommit(f func()) { s.beforeCommit = f }

// Queued returns how many appends wait in the writer's queue.
func (s *Store) Queued() int { return len(s.reqs) }

// LockKey returns the advisory lock the writer takes around positions.
func (s *Store) LockKey() int64 { return s.lockKey }

// LockConnPID returns the server process of the exclusive writer's lock
// connection (0 without one).
func (s *Store) LockConnPID() uint32 {
	if s.lockConn == nil {
		return 0
	}
	return s.lockConn.PgConn().PID()
}

// ListenPID returns the server process of the LISTEN connection last
// opened.
func (s *Store) ListenPID() uint32 { return s.listenPID.Load() }
