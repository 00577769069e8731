package main

import (
	"context"
	"testing"

	"github.com/payledger/payledger/internal/apiclient"
	"github.com/payledger/payledger/ledger/staffkeys"
)

// staffClient makes a staff key of role on m and returns a client of m's
// API acting with it.
func staffClient(t *testing.T, ctx context.Context, m *Main, role staffkeys.Role) *apiclient.Client {
	t.Helper()
	tok, _, err := m.StaffKeys.Create(ctx, role, "test "+string(role))
	if err != nil {
		t.Fatal(err)
	}
	return apiclient.New(m.URL).As(tok)
}

// expecter returns a request function that fails t unless the answer has
// the given status.
func expecter(t *testing.T, ctx context.Context) func(c *apiclient.Client, status int, method, path string, body any) apiclient.Response {
	return func(c *apiclient.Client, status int, method, path string, body any) apiclient.Response {
		t.Helper()
		r, err := c.Expect(ctx, status, method, path, body, "")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}
