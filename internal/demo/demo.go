// Package demo is the narrated scenario that `payledger demo` walks and the
// end-to-end test replays against the built binary: every step goes through
// the public HTTP API and checks the reply, so the demo cannot drift from
// what the server really does. It is not product API: it talks to the
// server only through internal/apiclient (and uses the domain's challenge
// builders), and must never import the ledger, httpapi or a store.
package demo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/internal/apiclient"
)

// Result is what the scenario leaves behind, for checks after it.
type Result struct {
	// Balances are the expected available balances by account id.
	Balances map[string]string
	// Names maps account ids to holder names.
	Names map[string]string
	// Payer is the main account's id, and PayerFactor its password
	// factor (the password is PayerPassword), for a test to log in again.
	Payer       string
	PayerFactor string
}

// PayerPassword is the password of the payer's first factor.
const PayerPassword = liPassword

// Staff are the staff API keys the scenario acts with (payledger keys
// create): an operator who opens accounts after an identity check, and the
// funding desk that credits matched bank transfers.
type Staff struct {
	Operator string
	Funding  string
	// Finance, Compliance and Regulator act in the year-end steps, which
	// run only when they are set and the scenario may move the server's
	// clock (Run's advance).
	Finance    string
	Compliance string
	Regulator  string
}

// runner carries the scenario's state between steps.
type runner struct {
	ctx    context.Context
	c      *apiclient.Client // the current caller
	anon   *apiclient.Client // no credentials
	staff  Staff
	w      io.Writer
	step   int
	secret string
	last   int64
	clock  func() time.Time
	// advance moves the server's clock forward (nil: it cannot).
	advance func(time.Duration)

	// What the steps learn and later steps use (see run).
	res                 *Result
	pwIDs               map[string]string // password factor ids by holder: "li", "zhang", "cafe"
	li, zhang, cafe     string            // account ids
	base                string            // Li Wei's account path
	password            map[string]any    // Li Wei's password proof
	totpID, certID      string            // Li Wei's TOTP and certificate factors
	certKey, laptop     ed25519.PrivateKey
	liToken, zhangToken string
	onePayment          string // the one-factor payment's id
	compensated         string // what the loss case paid Li Wei
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

// as makes token the caller of the following steps.
func (r *runner) as(token string) { r.c = r.anon.As(token) }

// problem expects a refusal with status and code.
func (r *runner) problem(status int, code, method, path string, body any) (apiclient.Response, error) {
	resp, err := r.expect(status, method, path, body, "")
	if err == nil && resp.Str("code") != code {
		err = fmt.Errorf("%s %s: want %s, got %s", method, path, code, resp.Raw)
	}
	return resp, err
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

// Run walks the scenario against the server behind c (a client without
// credentials) with the given staff keys. clock is the client's clock for
// TOTP codes (time.Now for a real server).
//
// With advance, a function that moves the server's clock (the one clock
// returns too) forward, and the finance, compliance and regulator keys,
// the scenario goes on to a loss compensated in advance and the end of
// the year: its last day's close, the regulator's report and the public
// disclosure.
func Run(ctx context.Context, c *apiclient.Client, staff Staff, w io.Writer, clock func() time.Time, advance func(time.Duration)) (Result, error) {
	r := &runner{ctx: ctx, c: c.As(""), anon: c.As(""), staff: staff, w: w, clock: clock, advance: advance}
	res := Result{Balances: map[string]string{}, Names: map[string]string{}}
	if err := r.run(&res); err != nil {
		return res, fmt.Errorf("demo step %d: %w", r.step, err)
	}
	return res, nil
}

const liPassword = "correct horse battery staple"

// login opens a session of id with proofs from laptop-1 and returns its token.
func (r *runner) login(id string, proofs ...any) (string, error) {
	r.as("")
	sess, err := r.expect(http.StatusCreated, "POST", "/v1/accounts/"+id+"/sessions", map[string]any{"device_id": "laptop-1", "proofs": proofs}, "")
	return sess.Str("token"), err
}

// stepUp is the authorisation of a protected change of Li's account:
// the password and a certificate signature over the change's challenge,
// which names the account's current version (so it verifies only once).
func (r *runner) stepUp(id, kind, subject string, password map[string]any, certID string, priv ed25519.PrivateKey) (map[string]any, error) {
	acct, err := r.expect(http.StatusOK, "GET", "/v1/accounts/"+id, nil, "")
	if err != nil {
		return nil, err
	}
	version, _ := acct.Body["version"].(float64)
	sig := ed25519.Sign(priv, domain.ChangeChallenge(kind, id, int64(version), subject))
	return map[string]any{"device_id": "laptop-1", "version": int64(version),
		"proofs": []any{password, map[string]any{"factor_id": certID, "signature": base64.StdEncoding.EncodeToString(sig)}}}, nil
}

// with returns body with the step-up's fields added.
func with(body, auth map[string]any) map[string]any {
	for k, v := range auth {
		body[k] = v
	}
	return body
}

// run walks the scenario's steps in order; each opens a numbered section.
func (r *runner) run(res *Result) error {
	r.res = res
	for _, step := range []func() error{
		r.openAccounts, r.refuseAnonymous, r.enrolFactors, r.logIn, r.fund, r.registerLaptop,
		r.payOneFactor, r.refuseOverCap, r.refuseDependentOTP, r.payTwoFactor, r.selfEnrol, r.raiseLimit,
		r.withdraw, r.refuseOverdraft, r.changePhone, r.suspendPayee, r.refuseClose, r.refuseCVV,
		r.showBalances, r.exportData, r.reportLoss, r.logOut, r.endYear, r.eraseData,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// yearEnd reports whether the scenario may run its year-end steps.
func (r *runner) yearEnd() bool {
	return r.advance != nil && r.staff.Finance != "" && r.staff.Compliance != "" && r.staff.Regulator != ""
}

func (r *runner) openAccounts() error {
	r.section("An operator opens three accounts after checking each holder's identity, each with a first factor")
	ids := map[string]string{}
	r.pwIDs = map[string]string{}
	r.as(r.staff.Operator)
	for _, a := range []struct{ key, name, kind string }{
		{"li", "Li Wei", "personal"}, {"zhang", "Zhang Min", "personal"}, {"cafe", "Harbour Coffee", "merchant"},
	} {
		resp, err := r.expect(http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": a.name, "currency": "CNY", "kind": a.kind,
			"identity_check": "branch-visit-" + a.key, "factor": map[string]any{"method": "password", "password": liPassword}},
			"open-"+a.key+"-"+fmt.Sprint(r.clock().UnixNano()))
		if err != nil {
			return err
		}
		ids[a.key] = resp.Str("id")
		r.pwIDs[a.key], _ = resp.Obj("first_factor")["factor_id"].(string)
		r.res.Names[ids[a.key]] = a.name
		r.say("   %-15s %s  (%s, agreed daily limit %s CNY, first factor: a password)", a.name, ids[a.key], a.kind, resp.Str("agreed_daily_limit"))
	}
	r.li, r.zhang, r.cafe = ids["li"], ids["zhang"], ids["cafe"]
	r.res.Payer, r.res.PayerFactor = r.li, r.pwIDs["li"]
	r.base = "/v1/accounts/" + r.li
	r.password = map[string]any{"factor_id": r.pwIDs["li"], "password": liPassword}
	return nil
}

func (r *runner) refuseAnonymous() error {
	r.section("Without credentials the API answers nobody; a customer can still open an account online")
	r.as("")
	if _, err := r.problem(http.StatusUnauthorized, "unauthenticated", "GET", r.base, nil); err != nil {
		return err
	}
	if _, err := r.problem(http.StatusUnauthorized, "unauthenticated", "POST", r.base+"/deposits",
		map[string]any{"amount": "1000000.00", "currency": "CNY", "reference": "made-up"}); err != nil {
		return err
	}
	self, err := r.expect(http.StatusCreated, "POST", "/v1/accounts", map[string]any{"holder_name": "Wang Fang", "currency": "CNY",
		"factor": map[string]any{"method": "password", "password": "another long passphrase"}}, "")
	if err != nil {
		return err
	}
	r.say("   reading Li Wei's account or crediting it without credentials: 401 unauthenticated")
	r.say("   Wang Fang opens %s herself; her password can log in now and move money from %s (cooling-off, no identity check)",
		self.Str("id"), self.Obj("first_factor")["usable_from"])
	return nil
}

func (r *runner) enrolFactors() error {
	r.section("The operator enrols a TOTP app on phone-1 and a certificate for Li Wei at the branch (R5)")
	r.as(r.staff.Operator)
	totp, err := r.expect(http.StatusCreated, "POST", r.base+"/factors", map[string]any{"identity_check": "branch-visit-li",
		"factor": map[string]any{"method": "totp", "device_id": "phone-1"}}, "")
	if err != nil {
		return err
	}
	r.secret = totp.Str("totp_secret")
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	r.certKey = priv
	cert, err := r.expect(http.StatusCreated, "POST", r.base+"/factors", map[string]any{"identity_check": "branch-visit-li",
		"factor": map[string]any{"method": "certificate", "public_key": base64.StdEncoding.EncodeToString(pub)}}, "")
	if err != nil {
		return err
	}
	r.totpID, r.certID = totp.Str("factor_id"), cert.Str("factor_id")
	r.say("   password    %s (knowledge)", r.pwIDs["li"])
	r.say("   totp        %s (%s, secret shown once)", r.totpID, totp.Str("category"))
	r.say("   certificate %s (%s, Ed25519 public key only)", r.certID, cert.Str("category"))
	return nil
}

func (r *runner) logIn() error {
	r.section("A failed login, then a good one (R9: every attempt is an event; 5 failures lock for 30 minutes)")
	r.as("")
	bad, err := r.expect(http.StatusUnauthorized, "POST", r.base+"/sessions",
		map[string]any{"device_id": "laptop-1", "proofs": []any{map[string]any{"factor_id": r.pwIDs["li"], "password": "wrong guess"}}}, "")
	if err != nil {
		return err
	}
	r.say("   wrong password: %d %s, attempts remaining %v", bad.Status, bad.Str("code"), bad.Body["attempts_remaining"])
	sess, err := r.expect(http.StatusCreated, "POST", r.base+"/sessions", map[string]any{"device_id": "laptop-1",
		"proofs": []any{r.password}}, "")
	if err != nil {
		return err
	}
	r.liToken = sess.Str("token")
	r.say("   the right password: a session token (256 random bits, only its hash is kept) until %s, ending after %v s idle",
		sess.Str("expires_at"), sess.Body["idle_timeout_seconds"])
	if r.zhangToken, err = r.login(r.zhang, map[string]any{"factor_id": r.pwIDs["zhang"], "password": liPassword}); err != nil {
		return err
	}
	r.as(r.zhangToken)
	if _, err := r.problem(http.StatusForbidden, "forbidden", "GET", r.base, nil); err != nil {
		return err
	}
	r.say("   Zhang Min's session on Li Wei's account: 403 forbidden (a session reaches only its own account)")
	return nil
}

func (r *runner) fund() error {
	r.section("The funding desk credits a 10,000.00 CNY bank transfer to Li Wei, once per bank reference")
	deposit := map[string]any{"amount": "10000.00", "currency": "CNY", "reference": "bank-transfer-123"}
	r.as(r.liToken)
	if _, err := r.problem(http.StatusForbidden, "forbidden", "POST", r.base+"/deposits", deposit); err != nil {
		return err
	}
	r.as(r.staff.Funding)
	if _, err := r.expect(http.StatusCreated, "POST", r.base+"/deposits", deposit, "dep-"+r.li); err != nil {
		return err
	}
	replay, err := r.expect(http.StatusCreated, "POST", r.base+"/deposits", deposit, "dep-"+r.li)
	if err != nil {
		return err
	}
	again, err := r.problem(http.StatusConflict, "bank_reference_used", "POST", r.base+"/deposits", deposit)
	if err != nil {
		return err
	}
	r.say("   Li Wei's own session cannot credit money: 403; the funding key can")
	r.say("   the same request retried with its Idempotency-Key is replayed (Idempotent-Replayed: %s); the same bank reference under a new key: %s",
		replay.Header.Get("Idempotent-Replayed"), again.Str("code"))
	return nil
}

func (r *runner) registerLaptop() error {
	r.section("Li Wei registers laptop-1, her first device, with its Ed25519 key (R6: a device is proven, not claimed)")
	r.as(r.liToken)
	_, laptop, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	r.laptop = laptop
	laptopPub := base64.StdEncoding.EncodeToString(laptop.Public().(ed25519.PublicKey))
	at := r.clock().UTC()
	reg := base64.StdEncoding.EncodeToString(ed25519.Sign(laptop, domain.DeviceChallenge(domain.ChangeKindDevice, r.li, "laptop-1", at, laptopPub)))
	if _, err := r.expect(http.StatusCreated, "POST", r.base+"/devices", map[string]any{"device": map[string]any{"device_id": "laptop-1",
		"public_key": laptopPub, "label": "work laptop", "signed_at": at.Format(time.RFC3339Nano), "signature": reg}}, ""); err != nil {
		return err
	}
	r.say("   registered with the session alone (a later device needs a step-up); instructions from laptop-1 now carry its signature")
	return nil
}

// signed adds laptop-1's signature over an instruction to body.
func (r *runner) signed(body map[string]any, purpose, subject string) map[string]any {
	at := r.clock().UTC()
	body["signed_at"] = at.Format(time.RFC3339Nano)
	body["device_signature"] = base64.StdEncoding.EncodeToString(ed25519.Sign(r.laptop, domain.DeviceChallenge(purpose, r.li, "laptop-1", at, subject)))
	return body
}

// pay initiates a payment from Li Wei's account on device and confirms it
// with the proofs made for its challenge (signed by laptop-1 when it is the
// device), expecting status want; it returns both replies.
func (r *runner) pay(payee, amount, desc string, proofs func(challenge []byte) ([]any, error), device string, want int) (apiclient.Response, apiclient.Response, error) {
	init, err := r.expect(http.StatusCreated, "POST", r.base+"/payments", map[string]any{"payee_account_id": payee, "amount": amount,
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
	body := map[string]any{"device_id": device, "proofs": ps}
	if device == "laptop-1" {
		body = r.signed(body, "payment", init.Str("payment_id"))
	}
	conf, err := r.expect(want, "POST", r.base+"/payments/"+init.Str("payment_id")+"/confirm", body, "")
	return init, conf, err
}

// The proofs a payment can be confirmed with: Li Wei's password alone, or
// with a one-time password, or with a certificate signature over the
// challenge.
func (r *runner) onlyPassword([]byte) ([]any, error) { return []any{r.password}, nil }

func (r *runner) withOTP([]byte) ([]any, error) {
	code, err := r.otp()
	return []any{r.password, map[string]any{"factor_id": r.totpID, "code": code}}, err
}

func (r *runner) withCert(ch []byte) ([]any, error) {
	sig := ed25519.Sign(r.certKey, ch)
	return []any{r.password, map[string]any{"factor_id": r.certID, "signature": base64.StdEncoding.EncodeToString(sig)}}, nil
}

func (r *runner) payOneFactor() error {
	r.section("Confirm-then-execute (R15): a one-factor payment of 12.50 to the coffee shop")
	init, conf, err := r.pay(r.cafe, "12.50", "flat white", r.onlyPassword, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	r.onePayment = init.Str("payment_id")
	d := init.Obj("details")
	ch, _ := base64.StdEncoding.DecodeString(init.Str("challenge"))
	r.say("   initiated: payer %v pays %v %v CNY, fee %v; status %s until %s", d["payer"], d["payee"], d["amount"], d["fee"], init.Str("status"), init.Str("expires_at"))
	r.say("   the challenge a certificate would sign names what is paid: %q", ch)
	r.say("   confirmed with a password: %s, %s of the %s CNY one-factor daily cap used", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))
	return nil
}

func (r *runner) refuseOverCap() error {
	r.section("A one-factor payment of 990.00 would pass the 1,000.00 daily cap (R10): refused")
	_, ref, err := r.pay(r.zhang, "990.00", "rent share", r.onlyPassword, "laptop-1", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if ref.Str("code") != "daily_limit_exceeded" || ref.Str("remaining") != "987.50" {
		return fmt.Errorf("want daily_limit_exceeded with 987.50 remaining, got %s", ref.Raw)
	}
	r.say("   %s: limit %s, used %s, remaining %s (%s)", ref.Str("code"), ref.Str("limit"), ref.Str("used"), ref.Str("remaining"), ref.Str("verification_level"))
	return nil
}

func (r *runner) refuseDependentOTP() error {
	r.section("A one-time password from the paying device does not count as a second factor (R6)")
	_, ref, err := r.pay(r.zhang, "990.00", "rent share", r.withOTP, "phone-1", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if ref.Str("code") != "factor_not_independent" {
		return fmt.Errorf("want factor_not_independent, got %s", ref.Raw)
	}
	r.say("   paying from phone-1 with phone-1's OTP: %s", ref.Str("code"))
	_, ref, err = r.pay(r.zhang, "990.00", "rent share", r.withOTP, "laptop-9", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if ref.Str("code") != "factor_not_independent" {
		return fmt.Errorf("want factor_not_independent, got %s", ref.Raw)
	}
	r.say("   the same phone calling itself laptop-9, without a registered device's signature: %s", ref.Str("code"))
	return nil
}

func (r *runner) payTwoFactor() error {
	r.section("The same 990.00 from laptop-1, signed by its key, with password + OTP: a two-factor payment (cap 5,000.00)")
	_, conf, err := r.pay(r.zhang, "990.00", "rent share", r.withOTP, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	r.say("   %s: %s of %s CNY used today without a certificate", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))
	return nil
}

func (r *runner) selfEnrol() error {
	r.section("Li Wei adds a TOTP app on tablet-1 herself: a step-up of two categories, then a 24-hour cooling-off")
	if _, err := r.problem(http.StatusBadRequest, "invalid_request", "POST", r.base+"/factors",
		map[string]any{"factor": map[string]any{"method": "totp", "device_id": "tablet-1"}}); err != nil {
		return err
	}
	auth, err := r.stepUp(r.li, domain.ChangeKindEnrolment, domain.MethodTOTP, r.password, r.certID, r.certKey)
	if err != nil {
		return err
	}
	tablet, err := r.expect(http.StatusCreated, "POST", r.base+"/factors", with(map[string]any{"factor": map[string]any{"method": "totp", "device_id": "tablet-1"}}, auth), "")
	if err != nil {
		return err
	}
	_, cool, err := r.pay(r.cafe, "1.00", "cookie", func([]byte) ([]any, error) {
		return []any{r.password, map[string]any{"factor_id": tablet.Str("factor_id"), "code": "000000"}}, nil
	}, "laptop-1", http.StatusUnprocessableEntity)
	if err != nil {
		return err
	}
	if cool.Str("code") != "factor_cooling_off" {
		return fmt.Errorf("want factor_cooling_off, got %s", cool.Raw)
	}
	r.say("   without proofs: refused; with password + certificate: enrolled (HolderNotified in the log)")
	r.say("   paying with it at once: %s until %s", cool.Str("code"), cool.Str("usable_from"))
	return nil
}

func (r *runner) raiseLimit() error {
	r.section("Li Wei and the institution raise the agreed daily limit to 60,000.00 (a step-up); a 6,000.00 certificate payment passes")
	auth, err := r.stepUp(r.li, domain.ChangeKindLimit, "60000.00", r.password, r.certID, r.certKey)
	if err != nil {
		return err
	}
	lim, err := r.expect(http.StatusOK, "PUT", r.base+"/limits", with(map[string]any{"agreed_daily_limit": "60000.00"}, auth), "")
	if err != nil {
		return err
	}
	r.say("   agreed daily limit %s -> %s", lim.Str("previous"), lim.Str("agreed_daily_limit"))
	_, conf, err := r.pay(r.cafe, "6000.00", "catering order", r.withCert, "laptop-1", http.StatusOK)
	if err != nil {
		return err
	}
	r.say("   password + certificate signature over the challenge: %s, %s of %s used", conf.Str("verification_level"), conf.Str("daily_used"), conf.Str("daily_limit"))
	return nil
}

func (r *runner) withdraw() error {
	r.section("Withdraw 300.00 to Li Wei's own bank account (bound with a step-up; outside the daily cap)")
	auth, err := r.stepUp(r.li, domain.ChangeKindBankAccount, "6222020200112233445", r.password, r.certID, r.certKey)
	if err != nil {
		return err
	}
	bank, err := r.expect(http.StatusCreated, "POST", r.base+"/bank-account", with(map[string]any{"bank_account_number": "6222020200112233445", "holder_name": "Li Wei"}, auth), "")
	if err != nil {
		return err
	}
	wd, err := r.expect(http.StatusCreated, "POST", r.base+"/withdrawals",
		map[string]any{"amount": "300.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{r.password}}, "")
	if err != nil {
		return err
	}
	r.say("   bound bank account ****%s (only a token and the last four digits are kept); withdrew %s CNY", bank.Str("bank_account_last4"), wd.Str("amount"))
	return nil
}

func (r *runner) refuseOverdraft() error {
	r.section("A withdrawal beyond the balance is refused, and the attempt is still in the log (R1)")
	over, err := r.problem(http.StatusUnprocessableEntity, "insufficient_funds", "POST", r.base+"/withdrawals",
		map[string]any{"amount": "50000.00", "currency": "CNY", "device_id": "laptop-1", "proofs": []any{r.password}})
	if err != nil {
		return err
	}
	r.say("   %s; recorded as WithdrawalRejected, no money moved", over.Str("code"))
	return nil
}

func (r *runner) changePhone() error {
	r.section("Li Wei changes the reserved phone number (R1): a sensitive change needs two factor categories")
	weak, err := r.problem(http.StatusUnprocessableEntity, "insufficient_verification", "PUT", r.base+"/phone",
		map[string]any{"phone": "+8613800138000", "device_id": "laptop-1", "proofs": []any{r.password}})
	if err != nil {
		return err
	}
	auth, err := r.stepUp(r.li, domain.ChangeKindPhone, "+8613800138000", r.password, r.certID, r.certKey)
	if err != nil {
		return err
	}
	phone, err := r.expect(http.StatusOK, "PUT", r.base+"/phone", with(map[string]any{"phone": "+8613800138000"}, auth), "")
	if err != nil {
		return err
	}
	r.say("   password alone: %s (recorded as ChangeRejected, nothing changed)", weak.Str("code"))
	r.say("   password + certificate signature over the change's challenge: reserved phone now %s (PhoneChanged, %v)",
		phone.Str("phone"), phone.Body["categories"])
	return nil
}

func (r *runner) suspendPayee() error {
	r.section("The coffee shop suspends its service (R14): payments to it are refused until it reactivates")
	cafeToken, err := r.login(r.cafe, map[string]any{"factor_id": r.pwIDs["cafe"], "password": liPassword})
	if err != nil {
		return err
	}
	r.as(cafeToken)
	if _, err := r.expect(http.StatusOK, "POST", "/v1/accounts/"+r.cafe+"/suspend", map[string]any{"reason": "renovation"}, ""); err != nil {
		return err
	}
	r.as(r.liToken)
	un, err := r.problem(http.StatusConflict, "payee_unavailable", "POST", r.base+"/payments", map[string]any{"payee_account_id": r.cafe, "amount": "5.00",
		"currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": "espresso"})
	if err != nil {
		return err
	}
	r.as(cafeToken)
	if _, err := r.expect(http.StatusOK, "POST", "/v1/accounts/"+r.cafe+"/reactivate", map[string]any{"reason": "reopened"}, ""); err != nil {
		return err
	}
	r.say("   paying a %s payee: %s; reactivated afterwards", un.Str("payee_status"), un.Str("code"))
	return nil
}

func (r *runner) refuseClose() error {
	r.section("Zhang Min asks to close the account while holding the 990.00 received (R14): refused until it is empty")
	r.as(r.zhangToken)
	cl, err := r.problem(http.StatusConflict, "conflict", "POST", "/v1/accounts/"+r.zhang+"/close", map[string]any{"reason": "moving abroad"})
	if err != nil {
		return err
	}
	if cl.Str("available") != "990.00" {
		return fmt.Errorf("want a conflict naming available 990.00, got %s", cl.Raw)
	}
	r.say("   %s: available %s CNY (a close counts every payment received, even one the balances projection has not applied yet)",
		cl.Str("code"), cl.Str("available"))
	return nil
}

func (r *runner) refuseCVV() error {
	r.section("A request carrying a card CVV is refused and nothing of it is kept (R19)")
	r.as(r.staff.Funding)
	fb, err := r.problem(http.StatusBadRequest, "forbidden_field", "POST", r.base+"/deposits",
		map[string]any{"amount": "1.00", "currency": "CNY", "reference": "x", "card": map[string]any{"cvv": "123"}})
	if err != nil {
		return err
	}
	r.say("   %s: field %s", fb.Str("code"), fb.Str("field"))
	return nil
}

func (r *runner) showBalances() error {
	r.section("Balances as the operator sees them (each read is recorded, naming the key), and Li Wei's statement")
	res := r.res
	res.Balances = map[string]string{r.li: "2697.50", r.zhang: "990.00", r.cafe: "6012.50"}
	r.as(r.staff.Operator)
	for _, id := range []string{r.li, r.zhang, r.cafe} {
		b, err := r.expect(http.StatusOK, "GET", "/v1/accounts/"+id+"/balance", nil, "")
		if err != nil {
			return err
		}
		if b.Str("available") != res.Balances[id] {
			return fmt.Errorf("balance of %s is %s, want %s", res.Names[id], b.Str("available"), res.Balances[id])
		}
		r.say("   %-15s %10s CNY", res.Names[id], b.Str("available"))
	}
	r.as(r.liToken)
	st, err := r.expect(http.StatusOK, "GET", r.base+"/statement?limit=100", nil, "")
	if err != nil {
		return err
	}
	for _, e := range st.List("entries") {
		r.say("   %-30v  %-16s %-6s %9v  balance %9v  %v", e["time"], e["type"], e["direction"], e["amount"], e["balance_after"], e["description"])
	}
	ops, err := r.expect(http.StatusOK, "GET", r.base+"/operations?limit=100", nil, "")
	if err != nil {
		return err
	}
	r.say("   Li Wei's own operation log holds %d hash-chained events (R1, R3)", len(ops.List("operations")))
	return nil
}

func (r *runner) logOut() error {
	r.section("Li Wei logs out: the token stops working at once")
	if _, err := r.expect(http.StatusNoContent, "DELETE", "/v1/sessions/current", nil, ""); err != nil {
		return err
	}
	if _, err := r.problem(http.StatusUnauthorized, "unauthenticated", "GET", r.base+"/balance", nil); err != nil {
		return err
	}
	r.say("   DELETE /v1/sessions/current: 204; the same token afterwards: 401 unauthenticated")
	return nil
}

func (r *runner) reportLoss() error {
	if !r.yearEnd() {
		return nil
	}
	r.section("Li Wei did not make the one-factor payment (Art. 37): the loss is compensated in advance from the risk reserve")
	r.as(r.staff.Finance)
	top, err := r.expect(http.StatusCreated, "POST", "/v1/reserve/adjustments", map[string]any{"kind": "top_up", "amount": "5000.00",
		"currency": "CNY", "reason": "opening the risk reserve"}, "")
	if err != nil {
		return err
	}
	r.as(r.liToken)
	lc, err := r.expect(http.StatusCreated, "POST", r.base+"/loss-cases", map[string]any{"payment_ids": []any{r.onePayment},
		"description": "I did not buy this coffee"}, "")
	if err != nil {
		return err
	}
	if lc.Str("advance") != "paid" {
		return fmt.Errorf("want the advance paid, got %s", lc.Raw)
	}
	r.compensated = lc.Str("compensated")
	r.as(r.staff.Compliance)
	det, err := r.expect(http.StatusOK, "POST", "/v1/loss-cases/"+lc.Str("case_id")+"/liability", map[string]any{"liable": "customer",
		"reasons": []any{"the holder's password was used from the holder's laptop"}, "evidence": []any{"device-log-2231"}}, "")
	if err != nil {
		return err
	}
	r.as(r.staff.Finance)
	cl, err := r.expect(http.StatusOK, "POST", "/v1/loss-cases/"+lc.Str("case_id")+"/close", map[string]any{}, "")
	if err != nil {
		return err
	}
	r.say("   finance tops up the reserve by %s CNY (ReserveAdjusted, naming the key and the reason)", top.Str("amount"))
	r.say("   Li Wei reports the loss of %s CNY: advance %s (%s), %s CNY paid from the reserve at once", lc.Str("loss"), lc.Str("advance"), lc.Str("advance_rule"), r.compensated)
	r.say("   compliance finds the customer liable with evidence, but a one-factor payment is the institution's loss whatever is shown:")
	r.say("   customer share %v (rule %v); the case closes %v", det.Obj("liability")["customer_share"], det.Obj("liability")["rule"], cl.Obj("closing")["outcome"])
	r.as(r.liToken)
	return nil
}

func (r *runner) endYear() error {
	if !r.yearEnd() {
		return nil
	}
	r.section("The year ends: finance closes its last day, the regulator reads the annual report, the public disclosure appears")
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		return err
	}
	now := r.clock().In(loc)
	year := now.Year()
	day := now.Format(time.DateOnly)
	r.advance(time.Date(year+1, 1, 1, 0, 5, 0, 0, loc).Sub(now))
	r.as(r.staff.Finance)
	cl, err := r.expect(http.StatusOK, "POST", "/v1/reserve/closes", map[string]any{"day": day, "currency": "CNY"}, "")
	if err != nil {
		return err
	}
	r.say("   close of %s: fee income %s, volume %s CNY, provisioned %s CNY into the reserve (policy %s)",
		cl.Str("day"), cl.Str("fee_income"), cl.Str("volume"), cl.Str("provisioned"), cl.Str("policy"))
	fin, err := r.expect(http.StatusOK, "GET", "/v1/finance", nil, "")
	if err != nil {
		return err
	}
	if !bytes.Contains(fin.Raw, []byte(`id="mismatch-count">No mismatch.`)) {
		return fmt.Errorf("the finance page shows a mismatch: %s", fin.Raw)
	}
	r.say("   finance's page: the reserve recomputed from the log matches the read models (no mismatch)")

	r.advance(8 * 24 * time.Hour) // the disclosure is published a week into January
	r.as(r.staff.Regulator)
	rep, err := r.expect(http.StatusOK, "GET", fmt.Sprintf("/v1/reports/annual/%d", year), nil, "")
	if err != nil {
		return err
	}
	cur := rep.List("currencies")
	if len(cur) != 1 {
		return fmt.Errorf("want one currency in the report, got %s", rep.Raw)
	}
	c := cur[0]
	losses, _ := c["customer_losses"].(map[string]any)
	comp, _ := c["compensation_paid"].(map[string]any)
	if comp["amount"] != r.compensated {
		return fmt.Errorf("the report's compensation %v, want %s", comp["amount"], r.compensated)
	}
	r.say("   annual report %d for the regulator: customer losses %v (%v CNY), compensation paid %v (%v CNY),", year,
		losses["count"], losses["amount"], comp["count"], comp["amount"])
	r.say("   reserve provisioned %v, topped up %v, used %v, balance at year end %v CNY; computed from log positions %v",
		c["reserve_provisioned"], c["reserve_topped_up"], c["reserve_used"], c["reserve_balance_year_end"], rep.Obj("log")["last_position"])
	r.as("")
	page, err := r.expect(http.StatusOK, "GET", fmt.Sprintf("/disclosures/%d", year), nil, "")
	if err != nil {
		return err
	}
	if !bytes.Contains(page.Raw, []byte(`data-figure="compensation_amount">`+r.compensated+`<`)) {
		return fmt.Errorf("the disclosure page does not show the compensation %s", r.compensated)
	}
	r.say("   GET /disclosures/%d (no login): a public page of the year's figures, without personal data", year)
	return nil
}

func (r *runner) exportData() error {
	r.section("Li Wei exports her personal data (R20): in the log it is sealed with her own data key")
	r.as(r.liToken)
	x, err := r.expect(http.StatusOK, "GET", r.base+"/personal-data", nil, "")
	if err != nil {
		return err
	}
	if x.Str("holder_name") != "Li Wei" || x.Body["erased"] != false {
		return fmt.Errorf("export: %s", x.Raw)
	}
	var descriptions []string
	for _, rec := range x.List("records") {
		if d, ok := rec["fields"].(map[string]any)["description"].(string); ok && rec["type"] == domain.TypePaymentConfirmed {
			descriptions = append(descriptions, d)
		}
	}
	r.say("   holder %s, phone %s, bank account ****%v; %d events hold personal data (payments described %q)",
		x.Str("holder_name"), x.Str("phone"), x.Obj("bank_account")["last4"], len(x.List("records")), descriptions)
	r.say("   the log holds each such field as pd1:<account>:<AES-256-GCM ciphertext>, the event's id bound in")
	return nil
}

func (r *runner) eraseData() error {
	if !r.yearEnd() {
		return nil
	}
	r.section("Zhang Min empties and closes her account; five years later compliance erases her personal data (R20, R2)")
	tok, err := r.login(r.zhang, map[string]any{"factor_id": r.pwIDs["zhang"], "password": liPassword})
	if err != nil {
		return err
	}
	r.as(tok)
	zhang := "/v1/accounts/" + r.zhang
	p, err := r.expect(http.StatusCreated, "POST", zhang+"/payments", map[string]any{"payee_account_id": r.cafe, "amount": "990.00",
		"currency": "CNY", "channel": "app", "terminal": "desktop", "device_id": "laptop-1", "description": "Zhang Min's last coffees"}, "")
	if err != nil {
		return err
	}
	if _, err := r.expect(http.StatusOK, "POST", zhang+"/payments/"+p.Str("payment_id")+"/confirm", map[string]any{"device_id": "laptop-1",
		"proofs": []any{map[string]any{"factor_id": r.pwIDs["zhang"], "password": liPassword}}}, ""); err != nil {
		return err
	}
	if _, err := r.expect(http.StatusOK, "POST", zhang+"/close", map[string]any{"reason": "moving abroad"}, ""); err != nil {
		return err
	}
	r.res.Balances[r.zhang], r.res.Balances[r.cafe] = "0.00", "7002.50"
	r.as(r.staff.Compliance)
	erase := map[string]any{"reference": "dsr-0001"}
	held, err := r.problem(http.StatusConflict, domain.CodePersonalDataRetained, "POST", zhang+"/erasure", erase)
	if err != nil {
		return err
	}
	r.say("   she pays her 990.00 to Harbour Coffee and closes the account; an erasure now: %s until %s (five years from her last operation)",
		held.Str("code"), held.Str("retained_until"))
	until, err := time.Parse(time.RFC3339, held.Str("retained_until"))
	if err != nil {
		return err
	}
	r.advance(until.Sub(r.clock()) + 24*time.Hour)
	e, err := r.expect(http.StatusOK, "POST", zhang+"/erasure", erase, "")
	if err != nil {
		return err
	}
	x, err := r.expect(http.StatusOK, "GET", zhang+"/personal-data", nil, "")
	if err != nil {
		return err
	}
	if x.Str("holder_name") != domain.ErasedText {
		return fmt.Errorf("export after the erasure: %s", x.Raw)
	}
	st, err := r.expect(http.StatusOK, "GET", "/v1/accounts/"+r.cafe+"/statement?from="+until.AddDate(-5, 0, -1).Format(time.RFC3339), nil, "")
	if err != nil {
		return err
	}
	for _, en := range st.List("entries") {
		if en["counterparty"] == r.zhang {
			r.say("   Harbour Coffee's statement still shows %v %v CNY from her, described %v", en["direction"], en["amount"], en["description"])
		}
	}
	r.say("   a day after %s the erasure passes (PersonalDataErased at position %v): her data key is destroyed;", until.Format(time.DateOnly), e.Obj("log")["last_position"])
	r.say("   her name now reads %s, while the log, its hashes and the amounts are unchanged", x.Str("holder_name"))
	return nil
}
