package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/ledger"
)

// TestLoggedPayloadsAreEncodingJSON: whatever path encoded them, the
// payloads in the log are exactly encoding/json's encoding of the events
// they decode to, for payments initiated, confirmed with a certificate and
// with a TOTP code, and the refusals around them.
func TestLoggedPayloadsAreEncodingJSON(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	enr, err := f.svc.EnrollFactor(ctx, operatorActor, f.payer.id, ledger.Idem{}, ledger.EnrollRequest{Method: domain.MethodTOTP, DeviceID: "token-9",
		IdentityCheck: testIdentityCheck})
	if err != nil {
		t.Fatal(err)
	}
	fe := enr.Decoded[0].(domain.FactorEnrolled)
	seed, err := f.svc.TOTPSecret(fe)
	if err != nil {
		t.Fatal(err)
	}
	descriptions := []string{"", "coffee", "咖啡 <b>&amp;</b> \"quoted\" \\ \u2028\u2029 \t\n end"}
	confirmed := 0
	for i, desc := range descriptions {
		req := paymentReq(f.payee.id, "12.34", f.payer.device)
		req.Description = desc
		// A certificate proof.
		out, err := f.svc.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, req)
		if err != nil {
			t.Fatal(err)
		}
		pi := initiated(t, out)
		if out, err = f.svc.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{Key: "k" + pi.PaymentID, BodyHash: "h"},
			f.payer.device, f.payer.proofs(pi.Challenge)); err != nil || out.Refusal != nil {
			t.Fatalf("confirm %d: %v / %v", i, err, out.Refusal)
		}
		confirmed++
		// A TOTP proof from another device, then the same code again (refused).
		out, err = f.svc.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, req)
		if err != nil {
			t.Fatal(err)
		}
		pi = initiated(t, out)
		f.e.clock.Advance(domain.TOTPStep)
		code, err := domain.TOTPCode(seed, domain.TOTPStepAt(f.e.clock.Now()))
		if err != nil {
			t.Fatal(err)
		}
		proof := []domain.Proof{{FactorID: fe.FactorID, Code: code}}
		if out, err = f.svc.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, "phone-other", proof); err != nil || out.Refusal != nil {
			t.Fatalf("confirm with TOTP %d: %v / %v", i, err, out.Refusal)
		}
		confirmed++
		out, err = f.svc.InitiatePayment(ctx, f.payer.actor(), f.payer.id, ledger.Idem{}, req)
		if err != nil {
			t.Fatal(err)
		}
		pi = initiated(t, out)
		if out, err = f.svc.ConfirmPayment(ctx, f.payer.actor(), f.payer.id, pi.PaymentID, ledger.Idem{}, "phone-other", proof); err != nil ||
			domain.ErrorCode(out.Refusal) != domain.CodeProofInvalid {
			t.Fatalf("reused TOTP code %d: %v / %v, want %s", i, err, out.Refusal, domain.CodeProofInvalid)
		}
	}
	counts := map[string]int{}
	for _, ev := range readAll(t, f.e.store) {
		want, err := json.Marshal(decode(t, ev))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ev.Payload, want) {
			t.Errorf("%s at position %d:\nstored        %s\nencoding/json %s", ev.Type, ev.Position, ev.Payload, want)
		}
		counts[ev.Type]++
	}
	if counts[domain.TypePaymentInitiated] != 3*len(descriptions) || counts[domain.TypePaymentConfirmed] != confirmed ||
		counts[domain.TypeVerificationFailed] != len(descriptions) {
		t.Fatalf("log holds %v", counts)
	}
}
