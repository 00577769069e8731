// Package domain holds the ledger's rules as pure code: money, the events
// of an account's stream, factors and their proofs, devices, limits, the
// account aggregate, and Decide, which turns a command into the events to
// append or a typed refusal. Every entry point (HTTP, the demo, the bench)
// reaches these rules through the ledger package, so all obey them alike;
// docs/rules.md says which rule is enforced where.
//
// It does no I/O and reads no clock and no randomness: the caller passes
// "now", ids, salts and nonces in, so decisions are reproducible. It must
// never import another package of this project.
package domain
