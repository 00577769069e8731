package ledger

// What the external tests (package ledger_test) need of the internals.

// AccessOps returns every operation the access table has a rule for, so
// that a test can check it covers all of them.
func AccessOps() []Op {
	ops := make([]Op, 0, len(access))
	for op := range access {
		ops = append(ops, op)
	}
	return ops
}
