// Package demo is the narrated scenario that `payledger demo` walks and the
// end-to-end test replays against the built binary: every step goes through
// the public HTTP API and checks the reply, so the demo cannot drift from
// what the server really does.
package demo

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/payledger/payledger/apiclient"
	"github.com/payledger/payledger/domain"
)

// Result is what the scenario leaves behind, for checks after it.
type Result struct {
	// Balances are the expected available balances by account id.
	Balances map[string]string
	// Names maps account ids to holder names.
	Names map[string]string
	// Payer is the main account's id.
	Payer string
}

// runner carries the scenario's state between steps.
type runner struct {
	ctx    context.Context
	c      *apiclient.Client
	w      io.Writer
	step   int
	secret string
	last   int64
	clock  func() time.Time
}

func (r *runner) say(format string, args ...any) {
	fmt.Fprintf(r.w, format+"\n", args...)
}

func (r *runner) section(title string) {
	r.step++
	fmt.Fprintf(r.w, "\n%d. %s\n", r.step, title)
}

func (r *runner) expect(status int, method, path string, body any, key string) (apiclient.Response, error) {
	return r.c.Expect(r.ctx, status, method, path, body, key)
}

// otp returns a fresh TOTP code. A code is single use per 30-second step and
// the server accepts the step before and after the current one, so the
// scenario walks forward through those and waits (at most one step) only
// when it has used them all.
func (r *runner) otp() (string, error) {
	for i := 0; i < 3; i++ {
		cur := domain.TOTPStepAt(r.clock())
		step := max(r.last+1, cur-1)
		if step <= cur+1 {
			r.last = step
			return domain.TOTPCode(r.secret, step)
		}
		r.say("   (waiting for the next 30-second one-time-password step)")
		select {
		case <-r.ctx.Done():
			return "", r.ctx.Err()
		case <-time.After(domain.TOTPStep):
		}
	}
	return "", fmt.Errorf("no one-time password step became free")
}

// Run walks the scenario against the server behind c. clock is the client's
// clock for TOTP codes (time.Now for a real server).
func Run(ctx context.Context, c *apiclient.Client, w io.Writer, clock func() time.Time) (Result, error) {
	r := &runner{ctx: ctx, c: c, w: w, clock: clock}
	res := Result{Balances: map[string]string{}, Names: map[string]string{}}
	if err := r.run(&res); err != nil {
		return res, fmt.Errorf("demo step %d: %w", r.step, err)
	}
	return res, nil
}

func (r *runner) run(res *Result) error {
	r.section("Open three accounts: two customers and a merchant")
	ids := map[string]string{}
	for _, a := range []struct{ key, name, kind string }{
		{"li", "Li Wei", "personal"}, {"zhang", "Zhang Min", "personal"}, {"cafe", "Harbour Coffee", "merchant"},
	} {
		resp, err := r.expect(http.StatusCreated, "POST", "/v1/accounts",
			map[string]any{"holder_name": a.name, "currency": "CNY", "kind": a.kind}, "open-"+a.key+"-"+fmt.Sprint(r.clock().UnixNano()))
		if err != nil {
			return err
		}
		ids[a.key] = resp.Str("id")
		res.Names[ids[a.key]] = a.name
		r.say("   %-15s %s  (%s, agreed daily limit %s CNY)", a.name, ids[a.key], a.kind, resp.Str("agreed_daily_limit"))
	}
	li, zhang, cafe := ids["li"], ids["zhang"], ids["cafe"]
	res.Payer = li
	base := "/v1/accounts/" + li

	r.section("Li Wei enrols factors of three kinds (R5): a password, a TOTP app on phone-1, a certificate")
	pw, err := r.expect(http.StatusCreated, "POST", base+"/factors", map[string]any{"method": "password", "password": "correct horse battery staple"}, "")
	if err != nil {
		return err
	}
	totp, err := r.expect(http.StatusCreated, "POST", base+"/factors", map[string]any{"method": "totp", "device_id": "phone-1"}, "")
	if err != nil {
		return err
	}
	r.secret = totp.Str("totp_secret")
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	cert, err := r.expect(http.StatusCreated, "POST", base+"/factors",
		map[string]any{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}, "")
	if err != nil {
		return err
	}
	pwID, totpID, certID := pw.Str("factor_id"), totp.Str("factor_id"), cert.Str("factor_id")
	r.say("   password    %s (%s)", pwID, pw.Str("category"))
	r.say("   totp        %s (%s, secret shown once)", totpID, totp.Str("category"))
	r.say("   certificate %s (%s, Ed25519 public key only)", certID, cert.Str("category"))
	password := map[string]any{"factor_id": pwID, "password": "correct horse battery staple"}

	r.section("A failed login, then a good one (R9: every attempt is an event; 5 failures lock for 30 minutes)")
	bad, err := r.expect(http.StatusUnauthorized, "POST", base+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": pwID, "password": "wrong guess"}}}, "")
	if err != nil {
		return err
	}
	r.say("   wrong password: %d %s, attempts remaining %v", bad.Status, bad.Str("code"), bad.Body["attempts_remaining"])
	code, err := r.otp()
	if err != nil {
		return err
	}
	sess, err := r.expect(http.StatusCreated, "POST", base+"/sessions", map[string]any{"device_id": "laptop-1",
		"proofs": []any{password, map[string]any{"factor_id": totpID, "code": code}}}, "")
	if err != nil {
		return err
	}
	r.say("   password + one-time password: session until %s", sess.Str("expires_at"))

	r.section("Deposit 10,000.00 CNY from Li Wei's bank")
	if _, err := r.expect(http.StatusCreated, "POST", base+"/deposits",
		map[string]any{"amount": "10000.00", "currency": "CNY", "reference": "bank-transfer-123"}, "dep-"+li); err != nil {
		return err
	}
	replay, err := r.expect(http.StatusCreated, "POST", base+"/deposits",
		map[string]any{"amount": "10000.00", "currency": "CNY", "reference": "bank-transfer-123"}, "dep-"+li)
	if err != nil {
		return err
	}
	r.say("   deposited; the same request retried with its Idempotency-Key is replayed (Idempotent-Replayed: %s), not paid twice",
		replay.Header.Get("Idempotent-Replayed"))

	pay := func(payee, amount, desc string, proofs func(challenge []byte) ([]any, error), device string, want int) (apiclient.Response, apiclient.Response, error) {
		init, err := r.expect(http.StatusCreated, "POST", base+"/payments", map[string]any{"payee_account_id": payee, "amount": amount,
			"currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": device, "description": desc}, "")
		if err != nil {
			return init, apiclient.Response{}, err
		}
		challenge, err := base64.StdEncoding.DecodeString(init.Str("challenge"))
		if err != nil {
			return init, apiclient.Response{}, err
		}
		ps, err := proofs(challenge)
		if err != nil {
			return init, apiclient.Response{}, err
		}
		conf, err := r.expect(want, "POST", base+"/payments/"+init.Str("payment_id")+"/confirm", map[string]any{"device_id": device, "proofs": ps}, "")
		return init, conf, err
	}
	onlyPassword := func([]byte) ([]any, error) { return []any{password}, nil }
	withOTP := func([]byte) ([]any, error) {
		code, err := r.otp()
		return []any{password, map[string]any{"factor_id": totpID, "code": code}}, err
	}
	withCert := func(ch []byte) ([]any, error) {
		sig := ed25519.Sign(priv, ch)
		return []any{password, map[string]any{"factor_id": certID, "signature": base64.StdEncoding.EncodeToString(sig)}}, nil
	}

	r.section("Confirm-then-execute (R15): a one-factor payment of 12.50 to the coffee shop")
	init, conf, err := pay(cafe, "12.50", "flat white", onlyPassword, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	d := init.Obj("details")
	r.say("   initiated: payer %v pays %v %v CNY, fee %v; status %s until %s", d["payer"], d["payee"], d["amount"], d["fee"], init.Str("status"), init.Str("expires_at"))
	r.say("   confirmed with a password: %s, %s of the %s CNY one-factor daily cap used", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))

	r.section("A one-factor payment of 990.00 would pass the 1,000.00 daily cap (R10): refused")
	_, ref, err := pay(zhang, "990.00", "rent share", onlyPassword, "laptop-1", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if ref.Str("code") != "daily_limit_exceeded" || ref.Str("remaining") != "987.50" {
		return fmt.Errorf("want daily_limit_exceeded with 987.50 remaining, got %s", ref.Raw)
	}
	r.say("   %s: limit %s, used %s, remaining %s (%s)", ref.Str("code"), ref.Str("limit"), ref.Str("used"), ref.Str("remaining"), ref.Str("verification_level"))

	r.section("A one-time password from the paying device does not count as a second factor (R6)")
	_, ref, err = pay(zhang, "990.00", "rent share", withOTP, "phone-1", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if ref.Str("code") != "factor_not_independent" {
		return fmt.Errorf("want factor_not_independent, got %s", ref.Raw)
	}
	r.say("   paying from phone-1 with phone-1's OTP: %s", ref.Str("code"))

	r.section("The same 990.00 from laptop-1 with password + OTP: a two-factor payment (cap 5,000.00)")
	_, conf, err = pay(zhang, "990.00", "rent share", withOTP, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	r.say("   %s: %s of %s CNY used today without a certificate", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))

	r.section("Li Wei and the institution agree a 20,000.00 daily limit; a 6,000.00 certificate payment passes")
	lim, err := r.expect(http.StatusOK, "PUT", base+"/limits", map[string]any{"agreed_daily_limit": "20000.00"}, "")
	if err != nil {
		return err
	}
	r.say("   agreed daily limit %s -> %s", lim.Str("previous"), lim.Str("agreed_daily_limit"))
	_, conf, err = pay(cafe, "6000.00", "catering order", withCert, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	r.say("   password + certificate signature over the challenge: %s, %s of %s used", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))

	r.section("Withdraw 300.00 to Li Wei's own bank account (outside the daily cap)")
	bank, err := r.expect(http.StatusCreated, "POST", base+"/bank-account", map[string]any{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei"}, "")
	if err != nil {
		return err
	}
	wd, err := r.expect(http.StatusCreated, "POST", base+"/withdrawals",
		map[string]any{"amount": "300.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{password}}, "")
	if err != nil {
		return err
	}
	r.say("   bound bank account ****%s (only a token and the last four digits are kept); withdrew %s CNY", bank.Str("bank_account_last4"), wd.Str("amount"))

	r.section("A withdrawal beyond the balance is refused, and the attempt is still in the log (R1)")
	over, err := r.expect(http.StatusUnprocessableEntity, "POST", base+"/withdrawals",
		map[string]any{"amount": "50000.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{password}}, "")
	if err != nil {
		return err
	}
	if over.Str("code") != "insufficient_funds" {
		return fmt.Errorf("want insufficient_funds, got %s", over.Raw)
	}
	r.say("   %s; recorded as WithdrawalRejected, no money moved", over.Str("code"))

	r.section("Li Wei changes the reserved phone number (R1): a sensitive change needs two factor categories")
	weak, err := r.expect(http.StatusUnprocessableEntity, "PUT", base+"/phone",
		map[string]any{"phone": "+8613800138000", "device_id": "laptop-1", "proofs": []any{password}}, "")
	if err != nil {
		return err
	}
	if weak.Str("code") != "insufficient_verification" {
		return fmt.Errorf("want insufficient_verification, got %s", weak.Raw)
	}
	// The certificate signs the change's challenge, which names the
	// account's current version (so the signature verifies only once).
	acct, err := r.expect(http.StatusOK, "GET", base, nil, "")
	if err != nil {
		return err
	}
	version, _ := acct.Body["version"].(float64)
	sig := ed25519.Sign(priv, domain.ChangeChallenge(domain.ChangeKindPhone, li, int64(version), "+8613800138000"))
	phone, err := r.expect(http.StatusOK, "PUT", base+"/phone", map[string]any{"phone": "+8613800138000", "device_id": "laptop-1",
		"version": int64(version), "proofs": []any{password, map[string]any{"factor_id": certID, "signature": base64.StdEncoding.EncodeToString(sig)}}}, "")
	if err != nil {
		return err
	}
	r.say("   password alone: %s (recorded as ChangeRejected, nothing changed)", weak.Str("code"))
	r.say("   password + certificate signature over the change's challenge: reserved phone now %s (PhoneChanged, %v)",
		phone.Str("phone"), phone.Body["categories"])

	r.section("The coffee shop suspends its service (R14): payments to it are refused until it reactivates")
	if _, err := r.expect(http.StatusOK, "POST", "/v1/accounts/"+cafe+"/suspend", map[string]any{"reason": "renovation"}, ""); err != nil {
		return err
	}
	un, err := r.expect(http.StatusConflict, "POST", base+"/payments", map[string]any{"payee_account_id": cafe, "amount": "5.00",
		"currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": "espresso"}, "")
	if err != nil {
		return err
	}
	if un.Str("code") != "payee_unavailable" {
		return fmt.Errorf("want payee_unavailable, got %s", un.Raw)
	}
	if _, err := r.expect(http.StatusOK, "POST", "/v1/accounts/"+cafe+"/reactivate", map[string]any{"reason": "reopened"}, ""); err != nil {
		return err
	}
	r.say("   paying a %s payee: %s; reactivated afterwards", un.Str("payee_status"), un.Str("code"))

	r.section("Zhang Min asks to close the account while holding the 990.00 received (R14): refused until it is empty")
	cl, err := r.expect(http.StatusConflict, "POST", "/v1/accounts/"+zhang+"/close", map[string]any{"reason": "moving abroad"}, "")
	if err != nil {
		return err
	}
	if cl.Str("code") != "conflict" || cl.Str("available") != "990.00" {
		return fmt.Errorf("want a conflict naming available 990.00, got %s", cl.Raw)
	}
	r.say("   %s: available %s CNY (a close counts every payment received, even one the balances projection has not applied yet)",
		cl.Str("code"), cl.Str("available"))

	r.section("A request carrying a card CVV is refused and nothing of it is kept (R19)")
	fb, err := r.expect(http.StatusBadRequest, "POST", base+"/deposits", map[string]any{"amount": "1.00", "currency": "CNY", "card": map[string]any{"cvv": "123"}}, "")
	if err != nil {
		return err
	}
	r.say("   %s: field %s", fb.Str("code"), fb.Str("field"))

	r.section("Balances and Li Wei's statement")
	res.Balances = map[string]string{li: "2697.50", zhang: "990.00", cafe: "6012.50"}
	for _, id := range []string{li, zhang, cafe} {
		b, err := r.expect(http.StatusOK, "GET", "/v1/accounts/"+id+"/balance", nil, "")
		if err != nil {
			return err
		}
		if b.Str("available") != res.Balances[id] {
			return fmt.Errorf("balance of %s is %s, want %s", res.Names[id], b.Str("available"), res.Balances[id])
		}
		r.say("   %-15s %10s CNY", res.Names[id], b.Str("available"))
	}
	st, err := r.expect(http.StatusOK, "GET", base+"/statement?limit=100", nil, "")
	if err != nil {
		return err
	}
	for _, e := range st.List("entries") {
		r.say("   %-30v  %-16s %-6s %9v  balance %9v  %v", e["time"], e["type"], e["direction"], e["amount"], e["balance_after"], e["description"])
	}
	ops, err := r.expect(http.StatusOK, "GET", base+"/operations?limit=100", nil, "")
	if err != nil {
		return err
	}
	r.say("   Li Wei's own operation log holds %d hash-chained events (R1, R3)", len(ops.List("operations")))
	return nil
}
