package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
	"github.com/payledger/payledger/ledger/staffkeys"
	"github.com/payledger/payledger/reserves"
)

// accessRule is who may perform an operation: anyone, the account's
// holder, staff of the listed roles.
type accessRule struct {
	public, holder bool
	roles          []staffkeys.Role
}

func roles(r ...staffkeys.Role) []staffkeys.Role { return r }

var (
	roleOperator   = staffkeys.RoleOperator
	roleFunding    = staffkeys.RoleFunding
	roleFinance    = staffkeys.RoleFinance
	roleCompliance = staffkeys.RoleCompliance
	roleAuditor    = staffkeys.RoleAuditor
)

// wantAccess is the access table as the tests expect it (R26), written out
// independently of ledger's: only funding credits money, the regulator
// reads reports and no account, finance reads balances only, and every
// change to how an account is protected or paid out is the holder's own.
var wantAccess = map[ledger.Op]accessRule{
	ledger.OpOpenAccount:     {public: true, roles: roles(roleOperator)},
	ledger.OpViewAccount:     {holder: true, roles: roles(roleOperator, roleCompliance, roleAuditor)},
	ledger.OpEnrollFactor:    {holder: true, roles: roles(roleOperator)},
	ledger.OpRevokeFactor:    {holder: true},
	ledger.OpReportLoss:      {holder: true, roles: roles(roleOperator)},
	ledger.OpResetCredential: {holder: true},
	ledger.OpLogin:           {public: true, holder: true},
	ledger.OpLogout:          {holder: true},
	ledger.OpBindBankAccount: {holder: true},
	ledger.OpDeposit:         {roles: roles(roleFunding)},
	ledger.OpInitiatePayment: {holder: true},
	ledger.OpConfirmPayment:  {holder: true},
	ledger.OpWithdraw:        {holder: true},
	ledger.OpAdjustLimit:     {holder: true},
	ledger.OpChangeIdentity:  {holder: true},
	ledger.OpChangePhone:     {holder: true},
	ledger.OpSuspend:         {holder: true, roles: roles(roleOperator)},
	ledger.OpReactivate:      {holder: true, roles: roles(roleOperator)},
	ledger.OpClose:           {holder: true, roles: roles(roleOperator)},
	ledger.OpUnlock:          {holder: true, roles: roles(roleOperator)},
	ledger.OpReadBalance:     {holder: true, roles: roles(roleOperator, roleFinance, roleCompliance, roleAuditor)},
	ledger.OpReadStatement:   {holder: true, roles: roles(roleOperator, roleCompliance, roleAuditor)},
	ledger.OpReadOperations:  {holder: true, roles: roles(roleOperator, roleCompliance, roleAuditor)},
	ledger.OpRegisterDevice:  {holder: true},
	ledger.OpRevokeDevice:    {holder: true, roles: roles(roleOperator)},
	ledger.OpReadMetrics:     {roles: roles(roleOperator, roleFunding, roleFinance, roleCompliance, staffkeys.RoleRegulator, roleAuditor)},
	// Loss cases: the holder reports and follows their own; compliance
	// decides liability; finance moves money; the regulator sees reports.
	ledger.OpReportLossCase:     {holder: true},
	ledger.OpViewLossCase:       {holder: true, roles: roles(roleFinance, roleCompliance, roleAuditor)},
	ledger.OpInvestigateLoss:    {roles: roles(roleCompliance)},
	ledger.OpDetermineLiability: {roles: roles(roleCompliance)},
	ledger.OpSettleLoss:         {roles: roles(roleFinance)},
	ledger.OpCloseLossCase:      {roles: roles(roleFinance, roleCompliance)},
	ledger.OpReadReserve:        {roles: roles(roleFinance, roleAuditor)},
	ledger.OpAdjustReserve:      {roles: roles(roleFinance)},
	ledger.OpCloseDay:           {roles: roles(roleFinance)},
	ledger.OpReadAnnualReport:   {roles: roles(staffkeys.RoleRegulator, roleFinance, roleAuditor)},
	// Disputes: the holder's own; the operators' desk and compliance
	// handle them.
	ledger.OpOpenDispute:     {holder: true},
	ledger.OpViewDispute:     {holder: true, roles: roles(roleOperator, roleCompliance, roleAuditor)},
	ledger.OpHandleDispute:   {roles: roles(roleOperator, roleCompliance)},
	ledger.OpWithdrawDispute: {holder: true},
	ledger.OpListCases:       {roles: roles(roleOperator, roleFinance, roleCompliance, roleAuditor)},
	// Personal data: the holder exports their own, compliance answers a
	// former holder's request and alone erases.
	ledger.OpExportPersonalData: {holder: true, roles: roles(roleCompliance)},
	ledger.OpErasePersonalData:  {roles: roles(roleCompliance)},
}

func staffActor(r staffkeys.Role) ledger.Actor {
	return ledger.Actor{KeyID: "key_test_" + string(r), Role: r}
}

// wantCode fails unless err carries code.
func wantCode(t testing.TB, what string, err error, code string) {
	t.Helper()
	if err == nil || domain.ErrorCode(err) != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}

// allowed reports whether err shows the access check let the call
// through: no error, or an error that is not about access (bad input, a
// state conflict, not found).
func allowed(err error) bool {
	c := domain.ErrorCode(err)
	return err == nil || (c != domain.CodeUnauthenticated && c != domain.CodeForbidden)
}

// TestAccessTable checks Authorize, the one access table, against the
// expected table: every operation it knows, for the public caller, the
// holder on their own and on another account, and each staff role.
func TestAccessTable(t *testing.T) {
	var ops []ledger.Op
	for _, op := range ledger.AccessOps() {
		if _, ok := wantAccess[op]; !ok {
			t.Errorf("operation %q has an access rule the test does not expect", op)
			continue
		}
		ops = append(ops, op)
	}
	for op := range wantAccess {
		if _, ok := ledger.Access(op); !ok {
			t.Errorf("operation %q has no access rule", op)
		}
	}
	slices.Sort(ops)
	const own, other, missing = "01JNYS00000000000000000001", "01JNYS00000000000000000002", "01JNYS0000000000000000000Z"
	for _, op := range ops {
		want := wantAccess[op]
		rule, _ := ledger.Access(op)
		if rule.Public != want.public || rule.Holder != want.holder || !sameRoles(rule.Roles, want.roles) {
			t.Errorf("%s: rule %+v, want %+v", op, rule, want)
		}
		// The public caller: allowed, or unauthenticated.
		err := ledger.Authorize(publicActor, op, own)
		if want.public {
			if err != nil {
				t.Errorf("%s: public refused: %v", op, err)
			}
		} else {
			wantCode(t, string(op)+" by the public", err, domain.CodeUnauthenticated)
		}
		// An account id alone is no credential.
		err = ledger.Authorize(ledger.Actor{AccountID: own}, op, own)
		if want.public {
			if err != nil {
				t.Errorf("%s: account id without a session refused: %v", op, err)
			}
		} else {
			wantCode(t, string(op)+" by an account id without a session", err, domain.CodeUnauthenticated)
		}
		// The holder on their own account.
		err = ledger.Authorize(holderOf(own), op, own)
		if want.holder {
			if err != nil {
				t.Errorf("%s: holder refused on their own account: %v", op, err)
			}
		} else {
			wantCode(t, string(op)+" by the holder", err, domain.CodeForbidden)
		}
		// The holder on another account, existing or not: one answer.
		errOther := ledger.Authorize(holderOf(own), op, other)
		errMissing := ledger.Authorize(holderOf(own), op, missing)
		wantCode(t, string(op)+" by a holder on another account", errOther, domain.CodeForbidden)
		if errOther == nil || errMissing == nil || errOther.Error() != errMissing.Error() {
			t.Errorf("%s: holder on another account %v, on a missing one %v: want the same", op, errOther, errMissing)
		}
		// Each role.
		for _, r := range staffkeys.Roles() {
			err := ledger.Authorize(staffActor(r), op, own)
			if slices.Contains(want.roles, r) {
				if err != nil {
					t.Errorf("%s: role %s refused: %v", op, r, err)
				}
			} else {
				wantCode(t, fmt.Sprintf("%s by role %s", op, r), err, domain.CodeForbidden)
			}
		}
		// A key without a known role.
		wantCode(t, string(op)+" by a key without a role", ledger.Authorize(ledger.Actor{KeyID: "key_test_none"}, op, own), domain.CodeForbidden)
	}
	wantCode(t, "unknown operation", ledger.Authorize(operatorActor, ledger.Op("transfer_everything"), own), domain.CodeInternal)
}

// flipChar returns s with the character at i replaced by another valid
// one ('A' or 'B').
func flipChar(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func sameRoles(a, b []staffkeys.Role) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// accessCall is one Service entry point, called with inputs that the
// decision refuses without recording anything once access is allowed, so
// that every actor meets the account in the same state.
type accessCall struct {
	op ledger.Op
	// suspended: act on an account that is already suspended.
	suspended bool
	// noAccount: the caller names no account (an opening, a logout).
	noAccount bool
	run       func(by ledger.Actor, id string) error
}

// TestAccessThroughService checks that every Service entry point is
// behind the access table, under its own operation and before it does
// anything: for each operation, the public caller, the holder on their
// own account, another holder on that account and on an account that does
// not exist (the same refusal), and each staff role. A refused call
// appends nothing.
func TestAccessThroughService(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 21)
	e.runProjection(t) // a close waits for it
	svc := e.node(t, func(c *ledger.Config) { c.CloseWait = 5 * time.Second })
	a := openCertAccount(t, ctx, svc, "Access Holder", 1)
	pw := enrolPassword(t, svc, a.id)
	fund(t, svc, a.id, "10.00") // so that a close is refused
	susp := openCertAccount(t, ctx, svc, "Suspended Holder", 2)
	if _, err := svc.Suspend(ctx, susp.actor(), susp.id, ledger.Idem{}, "holiday"); err != nil {
		t.Fatal(err)
	}
	b := openCertAccount(t, ctx, svc, "Other Holder", 3)
	missing := e.newID()
	const nope = "01JNYS0000000000000000NOPE"
	idem := ledger.Idem{}
	calls := []accessCall{
		{op: ledger.OpOpenAccount, noAccount: true, run: func(by ledger.Actor, _ string) error {
			_, err := svc.OpenAccount(ctx, by, idem, ledger.OpenRequest{HolderName: "New Holder", Currency: "XXX",
				Factor: ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"}, IdentityCheck: testIdentityCheck})
			return err
		}},
		{op: ledger.OpViewAccount, run: func(by ledger.Actor, id string) error {
			_, err := svc.Account(ctx, by, id)
			return err
		}},
		{op: ledger.OpEnrollFactor, run: func(by ledger.Actor, id string) error {
			_, err := svc.EnrollFactor(ctx, by, id, idem, ledger.EnrollRequest{Method: "bogus", IdentityCheck: testIdentityCheck})
			return err
		}},
		{op: ledger.OpRevokeFactor, run: func(by ledger.Actor, id string) error {
			_, err := svc.RevokeFactor(ctx, by, id, idem, nope, "lost", domain.Authorisation{})
			return err
		}},
		{op: ledger.OpReportLoss, run: func(by ledger.Actor, id string) error {
			_, err := svc.ReportCredentialLoss(ctx, by, id, idem, nope, testIdentityCheck)
			return err
		}},
		{op: ledger.OpResetCredential, run: func(by ledger.Actor, id string) error {
			_, err := svc.ResetCredential(ctx, by, id, idem, ledger.ResetRequest{FactorID: nope})
			return err
		}},
		{op: ledger.OpLogin, run: func(by ledger.Actor, id string) error {
			_, err := svc.Login(ctx, by, id, idem, "", nil)
			return err
		}},
		{op: ledger.OpLogout, noAccount: true, run: func(by ledger.Actor, _ string) error {
			if by.Holder() {
				// A logout needs a session that exists: log in for real.
				by = loginActor(t, svc, a.id, pw)
			}
			_, err := svc.Logout(ctx, by)
			return err
		}},
		{op: ledger.OpBindBankAccount, run: func(by ledger.Actor, id string) error {
			_, err := svc.BindBankAccount(ctx, by, id, idem, "12", "Access Holder", domain.Authorisation{})
			return err
		}},
		{op: ledger.OpDeposit, run: func(by ledger.Actor, id string) error {
			_, err := svc.Deposit(ctx, by, id, idem, "abc", "CNY", "bank ref 1")
			return err
		}},
		{op: ledger.OpInitiatePayment, run: func(by ledger.Actor, id string) error {
			_, err := svc.InitiatePayment(ctx, by, id, idem, ledger.PaymentRequest{Amount: "abc", Currency: "CNY"})
			return err
		}},
		{op: ledger.OpConfirmPayment, run: func(by ledger.Actor, id string) error {
			_, err := svc.ConfirmPayment(ctx, by, id, nope, idem, "phone", nil)
			return err
		}},
		{op: ledger.OpWithdraw, run: func(by ledger.Actor, id string) error {
			_, err := svc.Withdraw(ctx, by, id, idem, "1.00", "CNY", "laptop", nil) // no bank account bound
			return err
		}},
		{op: ledger.OpAdjustLimit, run: func(by ledger.Actor, id string) error {
			_, err := svc.AdjustLimit(ctx, by, id, idem, "-1", domain.Authorisation{})
			return err
		}},
		{op: ledger.OpChangeIdentity, run: func(by ledger.Actor, id string) error {
			_, err := svc.ChangeIdentity(ctx, by, id, idem, "", domain.Authorisation{})
			return err
		}},
		{op: ledger.OpChangePhone, run: func(by ledger.Actor, id string) error {
			_, err := svc.ChangePhone(ctx, by, id, idem, "x", domain.Authorisation{})
			return err
		}},
		{op: ledger.OpSuspend, suspended: true, run: func(by ledger.Actor, id string) error {
			_, err := svc.Suspend(ctx, by, id, idem, "again")
			return err
		}},
		{op: ledger.OpReactivate, run: func(by ledger.Actor, id string) error {
			_, err := svc.Reactivate(ctx, by, id, idem, "not suspended")
			return err
		}},
		{op: ledger.OpClose, run: func(by ledger.Actor, id string) error {
			_, err := svc.Close(ctx, by, id, idem, "holding money")
			return err
		}},
		{op: ledger.OpUnlock, run: func(by ledger.Actor, id string) error {
			_, err := svc.Unlock(ctx, by, id, idem, "not locked", testIdentityCheck)
			return err
		}},
		{op: ledger.OpRevokeDevice, run: func(by ledger.Actor, id string) error {
			// No such device: refused by access control first, or as
			// not_found once past it.
			_, err := svc.RevokeDevice(ctx, by, id, idem, "nope", "", domain.Authorisation{}, testIdentityCheck)
			return err
		}},
		{op: ledger.OpRegisterDevice, run: func(by ledger.Actor, id string) error {
			// Malformed on purpose: refused by access control first, or
			// as invalid input once past it.
			_, err := svc.RegisterDevice(ctx, by, id, idem, ledger.DeviceRequest{DeviceID: "phone"})
			return err
		}},
	}
	// The loss-case steps name a case, not an account: a missing case is
	// not_found once access allows the caller.
	caseCalls := map[ledger.Op]func(by ledger.Actor) error{
		ledger.OpInvestigateLoss: func(by ledger.Actor) error {
			_, err := svc.InvestigateLoss(ctx, by, nope, idem, "")
			return err
		},
		ledger.OpDetermineLiability: func(by ledger.Actor) error {
			_, err := svc.DetermineLiability(ctx, by, nope, idem, reserves.Finding{})
			return err
		},
		ledger.OpSettleLoss: func(by ledger.Actor) error {
			_, err := svc.SettleLoss(ctx, by, nope, idem)
			return err
		},
		ledger.OpCloseLossCase: func(by ledger.Actor) error {
			_, err := svc.CloseLossCase(ctx, by, nope, idem)
			return err
		},
		ledger.OpReadReserve: func(by ledger.Actor) error {
			_, err := svc.Reserve(ctx, by, "CNY", 5)
			return err
		},
		ledger.OpAdjustReserve: func(by ledger.Actor) error {
			_, err := svc.AdjustReserve(ctx, by, idem, domain.AdjustTopUp, "abc", "CNY", "refused: not an amount")
			return err
		},
		ledger.OpCloseDay: func(by ledger.Actor) error {
			_, err := svc.CloseDay(ctx, by, domain.CNY, "2099-01-01")
			return err
		},
		ledger.OpReadAnnualReport: func(by ledger.Actor) error {
			_, err := svc.AnnualReport(ctx, by, 1999)
			return err
		},
		ledger.OpHandleDispute: func(by ledger.Actor) error {
			_, err := svc.AnswerDispute(ctx, by, nope, idem, "")
			return err
		},
	}
	for op, run := range caseCalls {
		calls = append(calls, accessCall{op: op, noAccount: true, run: func(by ledger.Actor, _ string) error { return run(by) }})
	}
	calls = append(calls, accessCall{op: ledger.OpOpenDispute, run: func(by ledger.Actor, id string) error {
		_, err := svc.OpenDispute(ctx, by, id, idem, ledger.DisputeRequest{Kind: "bogus"})
		return err
	}})
	calls = append(calls, accessCall{op: ledger.OpReportLossCase, run: func(by ledger.Actor, id string) error {
		_, err := svc.ReportLossCase(ctx, by, id, idem, ledger.LossRequest{PaymentIDs: []string{nope}})
		return err
	}})
	calls = append(calls, accessCall{op: ledger.OpExportPersonalData, run: func(by ledger.Actor, id string) error {
		_, err := svc.ExportPersonalData(ctx, by, id, 1)
		return err
	}})
	calls = append(calls, accessCall{op: ledger.OpErasePersonalData, run: func(by ledger.Actor, id string) error {
		// Refused as free text once past access control.
		_, err := svc.ErasePersonalData(ctx, by, id, idem, "a name, not a reference")
		return err
	}})
	for _, op := range []ledger.Op{ledger.OpReadBalance, ledger.OpReadStatement, ledger.OpReadOperations} {
		calls = append(calls, accessCall{op: op, run: func(by ledger.Actor, id string) error {
			return svc.AuthorizeRead(ctx, by, op, id)
		}})
	}
	covered := map[ledger.Op]bool{
		ledger.OpReadMetrics: true, // served by httpapi alone: it reads no account
		// A holder may see their own case or dispute only, and withdraw
		// their own dispute: TestLossCaseAccess, TestDisputeLifecycle.
		ledger.OpViewLossCase:    true,
		ledger.OpViewDispute:     true,
		ledger.OpWithdrawDispute: true,
		// The lists of cases read the read models: served by httpapi alone.
		ledger.OpListCases: true,
	}
	for _, c := range calls {
		covered[c.op] = true
		t.Run(string(c.op), func(t *testing.T) {
			want := wantAccess[c.op]
			target := a
			if c.suspended {
				target = susp
			}
			check := func(who string, by ledger.Actor, id string, ok bool, refusal string) error {
				t.Helper()
				head := e.head(t)
				err := c.run(by, id)
				if ok {
					if !allowed(err) {
						t.Errorf("%s: refused: %v", who, err)
					}
					return err
				}
				wantCode(t, who, err, refusal)
				if h := e.head(t); h != head {
					t.Errorf("%s: the refused call appended: head %d -> %d", who, head, h)
				}
				return err
			}
			check("public", publicActor, target.id, want.public, domain.CodeUnauthenticated)
			check("holder", target.actor(), target.id, want.holder, domain.CodeForbidden)
			if !c.noAccount {
				errOther := check("another holder", b.actor(), target.id, false, domain.CodeForbidden)
				errMissing := check("a holder on a missing account", b.actor(), missing, false, domain.CodeForbidden)
				if errOther == nil || errMissing == nil || errOther.Error() != errMissing.Error() ||
					jsonOf(t, domain.ErrorDetails(errOther)) != jsonOf(t, domain.ErrorDetails(errMissing)) {
					t.Errorf("another holder's account answers %v, a missing one %v: want the same", errOther, errMissing)
				}
			}
			for _, r := range staffkeys.Roles() {
				check("role "+string(r), staffActor(r), target.id, slices.Contains(want.roles, r), domain.CodeForbidden)
			}
		})
	}
	for op := range wantAccess {
		if !covered[op] {
			t.Errorf("no Service entry point checked for %s", op)
		}
	}
}

// openPasswordAccount opens an account (as the operator, after an identity
// check) whose first factor is the password testPassword.
func openPasswordAccount(t testing.TB, s *ledger.Service, name string) (id, pw string) {
	t.Helper()
	out := openAccount(t, s, name, domain.KindPersonal, ledger.EnrollRequest{Method: domain.MethodPassword, Password: testPassword})
	return out.AccountID, firstFactor(t, out).FactorID
}

// login logs in to id with the password factor pw and returns the token.
func login(t testing.TB, s *ledger.Service, id, pw string) string {
	t.Helper()
	out, err := s.Login(context.Background(), publicActor, id, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: pw, Password: testPassword}})
	if err != nil || out.Refusal != nil {
		t.Fatalf("login to %s: %v / %v", id, err, out.Refusal)
	}
	if out.Secret == "" {
		t.Fatalf("login to %s returned no token", id)
	}
	return out.Secret
}

// loginActor logs in and authenticates the token.
func loginActor(t testing.TB, s *ledger.Service, id, pw string) ledger.Actor {
	t.Helper()
	by, err := s.Authenticate(context.Background(), login(t, s, id, pw))
	if err != nil {
		t.Fatalf("authenticate a fresh token: %v", err)
	}
	return by
}

// TestAuthenticateSessions: a fresh login's token authenticates as its
// account's session; every token that is not one, or no longer is, is
// unauthenticated with one and the same answer.
func TestAuthenticateSessions(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 22)
	svc := e.node(t, nil)
	other := e.node(t, nil)
	p := e.policy
	a, pw := openPasswordAccount(t, svc, "Session Holder")
	b, bpw := openPasswordAccount(t, svc, "Second Holder")

	var refusals []error
	refused := func(what, token string, nodes ...*ledger.Service) {
		t.Helper()
		if len(nodes) == 0 {
			nodes = []*ledger.Service{svc}
		}
		for _, n := range nodes {
			by, err := n.Authenticate(ctx, token)
			if domain.ErrorCode(err) != domain.CodeUnauthenticated || by != (ledger.Actor{}) {
				t.Errorf("%s: authenticated as %+v, %v; want %s", what, by, err, domain.CodeUnauthenticated)
			}
			refusals = append(refusals, err)
		}
	}
	accepted := func(what, token, account string) ledger.Actor {
		t.Helper()
		by, err := svc.Authenticate(ctx, token)
		if err != nil || by.AccountID != account || !by.Holder() || by.Staff() {
			t.Fatalf("%s: %+v, %v; want a session of %s", what, by, err, account)
		}
		return by
	}

	t.Run("fresh token", func(t *testing.T) {
		out, err := svc.Login(ctx, publicActor, a, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: pw, Password: testPassword}})
		if err != nil || out.Refusal != nil {
			t.Fatalf("login: %v / %v", err, out.Refusal)
		}
		ls := out.Decoded[len(out.Decoded)-1].(domain.LoginSucceeded)
		by := accepted("fresh token", out.Secret, a)
		if by.SessionID != ls.SessionID {
			t.Errorf("session %s, login recorded %s", by.SessionID, ls.SessionID)
		}
		// The log holds the token's hash, never the token.
		for _, ev := range readAll(t, e.store) {
			if bytes.Contains(ev.Payload, []byte(out.Secret[len(out.Secret)-43:])) {
				t.Errorf("%s at position %d holds the session token", ev.Type, ev.Position)
			}
		}
		// Another node (no cache of the account) accepts it too.
		if by2, err := other.Authenticate(ctx, out.Secret); err != nil || by2 != by {
			t.Errorf("other node: %+v, %v; want %+v", by2, err, by)
		}
	})

	t.Run("altered tokens", func(t *testing.T) {
		tok := login(t, svc, a, pw)
		accepted("unaltered", tok, a)
		flip := func(i int) string { return flipChar(tok, i) }
		secret := len(tok) - 1
		sessionPart := len("pls_") + 26 + 1 + 5
		accountPart := len("pls_") + 20
		for name, bad := range map[string]string{
			"last character of the secret":  flip(secret),
			"first character of the secret": flip(len(tok) - 43),
			"a character of the session id": flip(sessionPart),
			"a character of the account id": flip(accountPart),
			"prefix":                        "plx_" + tok[4:],
			"truncated":                     tok[:len(tok)-1],
			"extended":                      tok + "A",
			"empty":                         "",
			"garbage":                       "not a token at all",
			"too long":                      "pls_" + string(make([]byte, 400)),
		} {
			refused(name, bad)
		}
		// The token still works: failures do not end it.
		accepted("after the altered ones", tok, a)
	})

	t.Run("token for another account", func(t *testing.T) {
		tok := login(t, svc, a, pw)
		login(t, svc, b, bpw) // b has sessions of its own
		moved := "pls_" + b + tok[len("pls_")+26:]
		refused("a's session under b's id", moved, svc, other)
		accepted("the original", tok, a)
	})

	t.Run("absolute expiry", func(t *testing.T) {
		out, err := svc.Login(ctx, publicActor, a, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: pw, Password: testPassword}})
		if err != nil || out.Refusal != nil {
			t.Fatalf("login: %v / %v", err, out.Refusal)
		}
		expires := out.Decoded[len(out.Decoded)-1].(domain.LoginSucceeded).ExpiresAt
		// Used every 10 minutes, well within the idle timeout, it lives
		// until its absolute expiry and not a moment longer.
		step := p.SessionIdle * 2 / 3
		n := 0
		for e.clock.Now().Add(step + time.Second).Before(expires) {
			e.clock.Advance(step)
			accepted(fmt.Sprintf("use %d", n), out.Secret, a)
			n++
		}
		if n < int(p.SessionTTL/step)-2 {
			t.Fatalf("only %d uses before expiry", n)
		}
		e.clock.Advance(expires.Sub(e.clock.Now()) + time.Second)
		refused("past SessionTTL", out.Secret, svc, other)
	})

	t.Run("idle timeout", func(t *testing.T) {
		tok := login(t, svc, a, pw)
		idle := login(t, svc, a, pw)
		almost := p.SessionIdle - time.Minute
		e.clock.Advance(almost)
		accepted("used within the idle timeout", tok, a)
		e.clock.Advance(almost)
		// Now more than SessionIdle after the logins: tok was used in
		// between, idle was not.
		accepted("used again within the idle timeout", tok, a)
		refused("never used for longer than SessionIdle", idle)
		e.clock.Advance(p.SessionIdle + time.Second)
		refused("unused for longer than SessionIdle", tok)
	})

	t.Run("logged out", func(t *testing.T) {
		tok := login(t, svc, a, pw)
		keep := login(t, svc, a, pw)
		by := accepted("before logout", tok, a)
		out, err := svc.Logout(ctx, by)
		if err != nil || len(out.Decoded) != 1 {
			t.Fatalf("logout: %v, %+v", err, out.Decoded)
		}
		if se, ok := out.Decoded[0].(domain.SessionEnded); !ok || se.SessionID != by.SessionID {
			t.Errorf("logout recorded %#v", out.Decoded[0])
		}
		refused("logged out", tok, svc, other)
		_, err = svc.Logout(ctx, by)
		wantCode(t, "logout again", err, domain.CodeUnauthenticated)
		accepted("another session of the account", keep, a)
	})

	t.Run("factor reported lost", func(t *testing.T) {
		c, cpw := openPasswordAccount(t, svc, "Losing Holder")
		enr, err := svc.EnrollFactor(ctx, operatorActor, c, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-1",
			IdentityCheck: testIdentityCheck})
		if err != nil {
			t.Fatal(err)
		}
		fe := enr.Decoded[0].(domain.FactorEnrolled)
		seed, err := svc.TOTPSecret(fe)
		if err != nil {
			t.Fatal(err)
		}
		byPw := login(t, svc, c, cpw)
		code, err := domain.TOTPCode(seed, domain.TOTPStepAt(e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		otpLogin, err := svc.Login(ctx, publicActor, c, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: fe.FactorID, Code: code}})
		if err != nil || otpLogin.Refusal != nil {
			t.Fatalf("login with the TOTP: %v / %v", err, otpLogin.Refusal)
		}
		by := accepted("password session", byPw, c)
		if _, err := svc.ReportCredentialLoss(ctx, by, c, ledger.Idem{}, cpw, ""); err != nil {
			t.Fatalf("report the password lost: %v", err)
		}
		refused("session of the lost password", byPw, svc, other)
		accepted("session of the TOTP", otpLogin.Secret, c)
	})

	t.Run("closed account", func(t *testing.T) {
		e.runProjection(t)
		c, cpw := openPasswordAccount(t, svc, "Closing Holder")
		tok := login(t, svc, c, cpw)
		by := accepted("before the close", tok, c)
		if _, err := svc.Close(ctx, by, c, ledger.Idem{}, "moving"); err != nil {
			t.Fatalf("close: %v", err)
		}
		refused("session of a closed account", tok, svc, other)
	})

	// Every refusal is the same answer, whatever was wrong.
	for _, err := range refusals {
		if err != nil && refusals[0] != nil && err.Error() != refusals[0].Error() {
			t.Errorf("refusals differ: %q and %q", err, refusals[0])
		}
	}
}

// TestAuthenticateStaffKeys: a staff token authenticates as its key and
// role through Config.StaffKeys; a revoked or unknown key, or any staff
// token on a node without a key store, is unauthenticated.
func TestAuthenticateStaffKeys(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 23)
	keys, err := staffkeys.Open(filepath.Join(t.TempDir(), "staffkeys.db"), e.clock.Now, newRand(23))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	svc := e.node(t, func(c *ledger.Config) { c.StaffKeys = keys })
	bare := e.node(t, nil)
	tok, key, err := keys.Create(ctx, staffkeys.RoleAuditor, "test auditor")
	if err != nil {
		t.Fatal(err)
	}
	by, err := svc.Authenticate(ctx, tok)
	if err != nil || by != (ledger.Actor{KeyID: key.ID, Role: staffkeys.RoleAuditor}) || by.Holder() || !by.Staff() {
		t.Fatalf("staff token: %+v, %v", by, err)
	}
	if _, err := bare.Authenticate(ctx, tok); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Errorf("staff token on a node without keys: %v", err)
	}
	other, _, err := keys.Create(ctx, staffkeys.RoleOperator, "test operator")
	if err != nil {
		t.Fatal(err)
	}
	unknown := flipChar(other, len(other)-1)
	if _, err := svc.Authenticate(ctx, unknown); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Errorf("altered staff token: %v", err)
	}
	if _, err := keys.Revoke(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, tok); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Errorf("revoked staff token: %v", err)
	}
	if by, err := svc.Authenticate(ctx, other); err != nil || by.Role != staffkeys.RoleOperator {
		t.Errorf("the other key after a revocation: %+v, %v", by, err)
	}
}

// TestLoginReplayShowsNoSecret: the token is shown once. A retry with the
// same Idempotency-Key and body replays the login (no second session)
// with an empty Secret, on any node; the first token keeps working.
func TestLoginReplayShowsNoSecret(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 24)
	svc := e.node(t, nil)
	id, pw := openPasswordAccount(t, svc, "Replay Holder")
	idem := idemFor("login-1", "login body")
	proofs := []domain.Proof{{FactorID: pw, Password: testPassword}}
	first, err := svc.Login(ctx, publicActor, id, idem, "laptop", proofs)
	if err != nil || first.Refusal != nil || first.Replayed || first.Secret == "" {
		t.Fatalf("first login: %v / %v, replayed %v, secret %q", err, first.Refusal, first.Replayed, first.Secret)
	}
	head := e.head(t)
	for _, n := range []*ledger.Service{svc, e.node(t, nil)} {
		again, err := n.Login(ctx, publicActor, id, idem, "laptop", proofs)
		if err != nil || !again.Replayed || again.Secret != "" {
			t.Errorf("replay: %v, replayed %v, secret %q; want a replay without the secret", err, again.Replayed, again.Secret)
		}
		if ids := eventIDs(again); len(ids) != len(first.Events) || ids[0] != eventIDs(first)[0] {
			t.Errorf("replay events %v, first %v", eventIDs(again), eventIDs(first))
		}
	}
	if h := e.head(t); h != head {
		t.Errorf("the replays appended: head %d -> %d", head, h)
	}
	if _, err := svc.Authenticate(ctx, first.Secret); err != nil {
		t.Errorf("the first token after the replays: %v", err)
	}
	// Two nodes answer the same retry at once: node B decides, node A
	// appends first, B's append conflicts and B finds A's login. B's
	// answer is then a replay, without the token it had built for a
	// session that was never recorded; A's token is the only one.
	hs := &hookStore{ConditionalStore: e.store}
	nodeB := e.node(t, func(c *ledger.Config) { c.Store = hs })
	idem2 := idemFor("login-2", "login body")
	var fromA ledger.Outcome
	var errA error
	var raced atomic.Bool
	hs.before = func(string, int64) error {
		if raced.CompareAndSwap(false, true) {
			fromA, errA = svc.Login(ctx, publicActor, id, idem2, "laptop", proofs)
		}
		return nil
	}
	fromB, err := nodeB.Login(ctx, publicActor, id, idem2, "laptop", proofs)
	if errA != nil || fromA.Secret == "" || fromA.Replayed {
		t.Fatalf("node A: %v, replayed %v", errA, fromA.Replayed)
	}
	if err != nil || !fromB.Replayed || fromB.Secret != "" || hs.conflicts.Load() != 1 {
		t.Fatalf("node B: %v, replayed %v, secret %q, %d conflicts; want a replay without a secret after one conflict",
			err, fromB.Replayed, fromB.Secret, hs.conflicts.Load())
	}
	if _, err := svc.Authenticate(ctx, fromA.Secret); err != nil {
		t.Errorf("node A's token: %v", err)
	}
	logins := 0
	for _, ev := range readStream(t, e.store, id) {
		if ev.Type == domain.TypeLoginSucceeded && strings.Contains(ev.IdempotencyKey, ":"+idem2.Key+"|") {
			logins++
		}
	}
	if logins != 1 {
		t.Errorf("%d logins recorded for one key, want 1", logins)
	}

	// A failed login shows no secret either.
	bad, err := svc.Login(ctx, publicActor, id, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: pw, Password: "wrong battery"}})
	if err != nil || bad.Refusal == nil || bad.Secret != "" {
		t.Errorf("failed login: %v / %v, secret %q", err, bad.Refusal, bad.Secret)
	}
}

// TestIdempotencyKeysAreScopedToTheActor: one caller's Idempotency-Key
// never replays another caller's request on the same account, nor is
// refused as reused because another caller used it.
func TestIdempotencyKeysAreScopedToTheActor(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 25)
	svc := e.node(t, nil)
	id, pw := openPasswordAccount(t, svc, "Scoped Holder")
	f1 := ledger.Actor{KeyID: "key_test_funding_1", Role: staffkeys.RoleFunding}
	f2 := ledger.Actor{KeyID: "key_test_funding_2", Role: staffkeys.RoleFunding}
	f3 := ledger.Actor{KeyID: "key_test_funding_3", Role: staffkeys.RoleFunding}

	t.Run("two staff keys", func(t *testing.T) {
		bodyX, bodyY := idemFor("dep-1", "100.00 ref-x"), idemFor("dep-1", "5.00 ref-y")
		first, err := svc.Deposit(ctx, f1, id, bodyX, "100.00", "CNY", "ref-x")
		if err != nil {
			t.Fatal(err)
		}
		// The same key with another body by another key: a new deposit,
		// not idempotency_reused.
		second, err := svc.Deposit(ctx, f2, id, bodyY, "5.00", "CNY", "ref-y")
		if err != nil || second.Replayed || eventIDs(second)[0] == eventIDs(first)[0] {
			t.Fatalf("f2 with f1's key: %v, replayed %v", err, second.Replayed)
		}
		// The same key and the same body by a third key is decided, not
		// replayed: here the bank reference was already credited.
		_, err = svc.Deposit(ctx, f3, id, bodyX, "100.00", "CNY", "ref-x")
		wantCode(t, "f3 repeating f1's request", err, domain.CodeBankReferenceUsed)
		// Each key's retry replays its own outcome.
		for _, c := range []struct {
			by   ledger.Actor
			idem ledger.Idem
			amt  string
			ref  string
			want ledger.Outcome
		}{{f1, bodyX, "100.00", "ref-x", first}, {f2, bodyY, "5.00", "ref-y", second}} {
			again, err := svc.Deposit(ctx, c.by, id, c.idem, c.amt, "CNY", c.ref)
			if err != nil || !again.Replayed || eventIDs(again)[0] != eventIDs(c.want)[0] {
				t.Errorf("%s retry: %v, replayed %v, events %v; want %v", c.by.KeyID, err, again.Replayed, eventIDs(again), eventIDs(c.want))
			}
		}
		v, err := svc.Account(ctx, holderOf(id), id)
		if err != nil || v.Available.String() != "105.00" {
			t.Errorf("available %s, %v; want 105.00", v.Available, err)
		}
	})

	t.Run("public caller and holder", func(t *testing.T) {
		idem := idemFor("login-k", "same body")
		proofs := []domain.Proof{{FactorID: pw, Password: testPassword}}
		pub, err := svc.Login(ctx, publicActor, id, idem, "laptop", proofs)
		if err != nil || pub.Refusal != nil || pub.Secret == "" {
			t.Fatalf("public login: %v / %v", err, pub.Refusal)
		}
		by, err := svc.Authenticate(ctx, pub.Secret)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := svc.Login(ctx, by, id, idem, "laptop", proofs)
		if err != nil || mine.Refusal != nil || mine.Replayed || mine.Secret == "" || mine.Secret == pub.Secret {
			t.Fatalf("the holder's login with the public caller's key: %v / %v, replayed %v", err, mine.Refusal, mine.Replayed)
		}
		for _, tok := range []string{pub.Secret, mine.Secret} {
			if _, err := svc.Authenticate(ctx, tok); err != nil {
				t.Errorf("token: %v", err)
			}
		}
		// The public caller's retry still replays the public login.
		again, err := svc.Login(ctx, publicActor, id, idem, "laptop", proofs)
		if err != nil || !again.Replayed || eventIDs(again)[0] != eventIDs(pub)[0] {
			t.Errorf("public retry: %v, replayed %v", err, again.Replayed)
		}
	})

	t.Run("operator and holder", func(t *testing.T) {
		idem := idemFor("suspend-k", "suspend")
		if _, err := svc.Suspend(ctx, operatorActor, id, idem, "risk"); err != nil {
			t.Fatal(err)
		}
		// The holder's request with the same key is decided: the account
		// is already suspended.
		_, err := svc.Suspend(ctx, holderOf(id), id, idem, "risk")
		wantCode(t, "holder with the operator's key", err, domain.CodeAccountSuspended)
		again, err := svc.Suspend(ctx, operatorActor, id, idem, "risk")
		if err != nil || !again.Replayed {
			t.Errorf("operator retry: %v, replayed %v", err, again.Replayed)
		}
	})

	t.Run("openings by the public and by an operator", func(t *testing.T) {
		idem := idemFor("open-k", "open")
		req := ledger.OpenRequest{HolderName: "Key Holder", Currency: "CNY", Factor: ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"}}
		pub, err := svc.OpenAccount(ctx, publicActor, idem, req)
		if err != nil {
			t.Fatal(err)
		}
		req.IdentityCheck = testIdentityCheck
		op, err := svc.OpenAccount(ctx, operatorActor, idem, req)
		if err != nil || op.Replayed || op.AccountID == pub.AccountID {
			t.Fatalf("operator opening with the public caller's key: %s (public %s), %v, replayed %v", op.AccountID, pub.AccountID, err, op.Replayed)
		}
	})
}

// TestOpenAccountKeyIsPerNode: account ids are random, never derived from
// the Idempotency-Key. A retry with the same key on the same node reaches
// the account its first try opened; on another node, or in another
// deployment, the same key opens another account.
func TestOpenAccountKeyIsPerNode(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 26)
	n1, n2 := e.node(t, nil), e.node(t, nil)
	idem := idemFor("open-me", "open body")
	req := ledger.OpenRequest{HolderName: "Random Id", Currency: "CNY", Factor: ledger.EnrollRequest{Method: domain.MethodPassword, Password: testPassword}}
	first, err := n1.OpenAccount(ctx, publicActor, idem, req)
	if err != nil || first.Replayed {
		t.Fatalf("open: %v, replayed %v", err, first.Replayed)
	}
	retry, err := n1.OpenAccount(ctx, publicActor, idem, req)
	if err != nil || !retry.Replayed || retry.AccountID != first.AccountID || eventIDs(retry)[0] != eventIDs(first)[0] {
		t.Fatalf("retry on the same node: %s, %v, replayed %v; want a replay of %s", retry.AccountID, err, retry.Replayed, first.AccountID)
	}
	// A retry whose first try failed (nothing recorded) reaches the same
	// id once it succeeds.
	idem2 := idemFor("open-fixed", "open body")
	bad := req
	bad.Currency = "XXX"
	if _, err := n1.OpenAccount(ctx, publicActor, idem2, bad); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Fatalf("open in an unknown currency: %v", err)
	}
	fixed, err := n1.OpenAccount(ctx, publicActor, idem2, req)
	if err != nil || fixed.Replayed || fixed.AccountID == first.AccountID {
		t.Fatalf("open after a failed try: %s, %v", fixed.AccountID, err)
	}
	elsewhere, err := n2.OpenAccount(ctx, publicActor, idem, req)
	if err != nil || elsewhere.Replayed || elsewhere.AccountID == first.AccountID {
		t.Fatalf("same key on another node: %s, %v, replayed %v; want a new account", elsewhere.AccountID, err, elsewhere.Replayed)
	}
	// Another deployment, same key: another id (an id derived from the
	// key would be the same everywhere).
	e2 := newEnv(t, 27)
	other, err := e2.node(t, nil).OpenAccount(ctx, publicActor, idem, req)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{first.AccountID: true, elsewhere.AccountID: true, other.AccountID: true, fixed.AccountID: true}
	if len(ids) != 4 {
		t.Errorf("account ids %v: want four different ones", ids)
	}
	// A publicly opened account's first factor cools off; an operator's
	// opening after an identity check makes it usable at once.
	if fe := firstFactor(t, first); !fe.UsableFrom.After(e.clock.Now()) || fe.StaffKey != "" {
		t.Errorf("publicly opened: factor usable from %v, staff %q", fe.UsableFrom, fe.StaffKey)
	}
	op := openAccount(t, n1, "Operator Opened", domain.KindPersonal, ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"})
	opened := op.Decoded[0].(domain.AccountOpened)
	if fe := firstFactor(t, op); !fe.UsableFrom.IsZero() || opened.StaffKey != operatorActor.KeyID || opened.IdentityCheck != testIdentityCheck {
		t.Errorf("opened by the operator: factor usable from %v, opening staff %+v", fe.UsableFrom, opened.Staff)
	}
	// An operator must name the identity check.
	_, err = n1.OpenAccount(ctx, operatorActor, ledger.Idem{}, ledger.OpenRequest{HolderName: "No Check", Currency: "CNY",
		Factor: ledger.EnrollRequest{Method: domain.MethodBiometric, DeviceID: "phone"}})
	wantCode(t, "operator opening without an identity check", err, domain.CodeInvalid)
}

// TestStaffReadsAreRecorded: a staff key's read of an account appends a
// StaffRead to the key's stream naming the account, the key, its role and
// what it read, and leaves the account's version alone; a holder's own
// read and a refused read append nothing.
func TestStaffReadsAreRecorded(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 28)
	svc := e.node(t, nil)
	h := openCertAccount(t, ctx, svc, "Read Holder", 1)
	last := func(by ledger.Actor) domain.Event {
		evs := readNamed(t, e.store, domain.StaffStream(by.KeyID))
		if len(evs) == 0 {
			t.Fatalf("nothing recorded for %s", by.KeyID)
		}
		return decode(t, evs[len(evs)-1])
	}
	head := e.head(t)
	if _, err := svc.Account(ctx, h.actor(), h.id); err != nil {
		t.Fatal(err)
	}
	if err := svc.AuthorizeRead(ctx, h.actor(), ledger.OpReadStatement, h.id); err != nil {
		t.Fatal(err)
	}
	if hd := e.head(t); hd != head {
		t.Fatalf("the holder's reads appended: head %d -> %d", head, hd)
	}
	v, err := svc.Account(ctx, operatorActor, h.id)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.StaffRead{AccountID: h.id, Role: "operator", What: "account", Staff: domain.Staff{StaffKey: operatorActor.KeyID}}
	if got := last(operatorActor); jsonOf(t, got) != jsonOf(t, want) {
		t.Errorf("operator's read recorded %#v, want %#v", got, want)
	}
	if v.Version != 2 {
		t.Errorf("the view is at version %d, want 2 (opening, factor): a staff read is not in the account's stream", v.Version)
	}
	for _, c := range []struct {
		by   ledger.Actor
		op   ledger.Op
		what string
	}{
		{staffActor(roleAuditor), ledger.OpReadStatement, "statement"},
		{staffActor(roleCompliance), ledger.OpReadOperations, "operations"},
		{staffActor(roleFinance), ledger.OpReadBalance, "balance"},
	} {
		if err := svc.AuthorizeRead(ctx, c.by, c.op, h.id); err != nil {
			t.Fatalf("%s reads %s: %v", c.by.Role, c.what, err)
		}
		want := domain.StaffRead{AccountID: h.id, Role: string(c.by.Role), What: c.what, Staff: domain.Staff{StaffKey: c.by.KeyID}}
		if got := last(c.by); jsonOf(t, got) != jsonOf(t, want) {
			t.Errorf("%s's read recorded %#v, want %#v", c.by.Role, got, want)
		}
	}
	// Refused reads record nothing.
	head = e.head(t)
	_, err = svc.Account(ctx, staffActor(roleFinance), h.id)
	wantCode(t, "finance views an account", err, domain.CodeForbidden)
	err = svc.AuthorizeRead(ctx, staffActor(staffkeys.RoleRegulator), ledger.OpReadBalance, h.id)
	wantCode(t, "the regulator reads a balance", err, domain.CodeForbidden)
	_, err = svc.Account(ctx, operatorActor, e.newID())
	wantCode(t, "operator reads an account that does not exist", err, domain.CodeNotFound)
	err = svc.AuthorizeRead(ctx, operatorActor, ledger.OpDeposit, h.id)
	wantCode(t, "a deposit is not a read", err, domain.CodeInternal)
	if hd := e.head(t); hd != head {
		t.Errorf("refused reads appended: head %d -> %d", head, hd)
	}
	// A closed account's history stays readable, and the read is recorded.
	e.runProjection(t)
	if _, err := svc.Close(ctx, operatorActor, h.id, ledger.Idem{}, "risk"); err != nil {
		t.Fatal(err)
	}
	if err := svc.AuthorizeRead(ctx, staffActor(roleAuditor), ledger.OpReadStatement, h.id); err != nil {
		t.Fatalf("auditor reads a closed account: %v", err)
	}
	if got, ok := last(staffActor(roleAuditor)).(domain.StaffRead); !ok || got.StaffKey != staffActor(roleAuditor).KeyID || got.What != "statement" {
		t.Errorf("read of the closed account recorded %#v", got)
	}
}

// TestHashSlotsBoundPasswordChecks: with one hashing slot, held by a login
// whose append is held in the store, every command that checks or hashes
// a password waits at most HashWait and is refused as rate_limited,
// recording nothing; a command without a password is not held up; once
// the slot is free, passwords are checked again.
func TestHashSlotsBoundPasswordChecks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 29)
	hook := &hookStore{ConditionalStore: e.store}
	svc := e.node(t, func(c *ledger.Config) {
		c.Store = hook
		c.HashSlots = 1
		c.HashWait = 50 * time.Millisecond
	})
	a, apw := openPasswordAccount(t, svc, "Slot Holder")
	b, bpw := openPasswordAccount(t, svc, "Waiting Holder")
	release := make(chan struct{})
	held := holdFirstAppend(hook, domain.AccountStream(a), release, 20*time.Second)
	type result struct {
		out ledger.Outcome
		err error
	}
	first := make(chan result, 1)
	go func() {
		out, err := svc.Login(ctx, publicActor, a, ledger.Idem{}, "laptop", []domain.Proof{{FactorID: apw, Password: testPassword}})
		first <- result{out, err}
	}()
	<-held // the login holds the only slot, its password checked, its append waiting

	head := e.head(t)
	pwProof := []domain.Proof{{FactorID: bpw, Password: testPassword}}
	busy := map[string]func(ctx context.Context) error{
		"login with a password": func(ctx context.Context) error {
			_, err := svc.Login(ctx, publicActor, b, ledger.Idem{}, "laptop", pwProof)
			return err
		},
		"opening with a password": func(ctx context.Context) error {
			_, err := svc.OpenAccount(ctx, publicActor, ledger.Idem{}, ledger.OpenRequest{HolderName: "Busy", Currency: "CNY",
				Factor: ledger.EnrollRequest{Method: domain.MethodPassword, Password: testPassword}})
			return err
		},
		"enrolling a password": func(ctx context.Context) error {
			_, err := svc.EnrollFactor(ctx, operatorActor, b, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodPassword,
				Password: testPassword, IdentityCheck: testIdentityCheck})
			return err
		},
		"a change proved with a password": func(ctx context.Context) error {
			_, err := svc.ChangePhone(ctx, holderOf(b), b, ledger.Idem{}, "+8613800138000",
				domain.Authorisation{DeviceID: "laptop", Proofs: pwProof})
			return err
		},
		"a withdrawal proved with a password": func(ctx context.Context) error {
			_, err := svc.Withdraw(ctx, holderOf(b), b, ledger.Idem{}, "1.00", "CNY", "laptop", pwProof)
			return err
		},
	}
	for name, run := range busy {
		start := time.Now()
		err := run(ctx)
		wantCode(t, name, err, domain.CodeRateLimited)
		if d := domain.ErrorDetails(err); d["retry_after"] == nil {
			t.Errorf("%s: no retry_after in %v", name, d)
		}
		if waited := time.Since(start); waited < 50*time.Millisecond {
			t.Errorf("%s: refused after %v, before HashWait", name, waited)
		}
	}
	// A caller that gives up first gets its own context's error.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := busy["login with a password"](cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled login: %v, want context.Canceled", err)
	}
	if h := e.head(t); h != head {
		t.Errorf("refused password commands appended: head %d -> %d", head, h)
	}
	// No password, no slot: a deposit goes through meanwhile.
	fund(t, svc, b, "1.00")

	close(release)
	r := <-first
	if r.err != nil || r.out.Refusal != nil || r.out.Secret == "" {
		t.Fatalf("the login holding the slot: %v / %v", r.err, r.out.Refusal)
	}
	login(t, svc, b, bpw) // the slot is free again
}
