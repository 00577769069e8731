package domain

import (
	"testing"
	"time"
)

// Proofs that reach each verification level without one-time passwords, so
// a test can pay many times in the same TOTP step.
var levelFactors = map[string][]string{
	LevelSingleFactor:         {fPassword},
	LevelTwoFactor:            {fPassword, fBio},
	LevelTwoFactorCertificate: {fBio, fCert},
}

// limitStep is one operation of a limits scenario: a payment at a level
// (the default), an AdjustLimit (limit set) or a withdrawal (withdraw set).
type limitStep struct {
	at       time.Time // zero keeps the previous time
	level    string
	amount   string
	limit    string
	withdraw string
	code     string         // expected error code, "" for success
	details  map[string]any // expected error details (a subset)
}

func pay(level, amount string) limitStep { return limitStep{level: level, amount: amount} }

func over(level, amount, cap, limit, used, remaining string) limitStep {
	return limitStep{level: level, amount: amount, code: CodeDailyLimitExceeded, details: map[string]any{
		"cap": cap, "limit": limit, "used": used, "remaining": remaining, "verification_level": level}}
}

func at(t time.Time, s limitStep) limitStep { s.at = t; return s }

const (
	single = LevelSingleFactor
	two    = LevelTwoFactor
	cert   = LevelTwoFactorCertificate
)

// TestDailyLimits checks R10: nested caps per verification level, the
// agreed limit, the calendar day in Asia/Shanghai, and withdrawals outside
// the caps.
func TestDailyLimits(t *testing.T) {
	// 15:59:59 UTC is 23:59:59 in Shanghai; 16:00 UTC is midnight there.
	lastSecond := time.Date(2026, 11, 25, 15, 59, 59, 0, time.UTC)
	midnightSH := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		steps []limitStep
	}{
		{"SingleFactorUpTo1000", []limitStep{
			pay(single, "600.00"), pay(single, "400.00"),
			over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00"),
		}},
		{"SingleFactorCumulative1000.01", []limitStep{
			pay(single, "500.00"),
			over(single, "500.01", "single_factor_daily", "1000.00", "500.00", "500.00"),
			pay(single, "500.00"),
		}},
		{"SingleFactorAtOnce", []limitStep{
			over(single, "1000.01", "single_factor_daily", "1000.00", "0.00", "1000.00"),
			pay(single, "1000.00"),
		}},
		{"TwoFactorUpTo5000", []limitStep{
			pay(two, "3000.00"), pay(two, "2000.00"),
			over(two, "0.01", "two_factor_daily", "5000.00", "5000.00", "0.00"),
		}},
		{"TwoFactorAtOnce", []limitStep{
			over(two, "5000.01", "two_factor_daily", "5000.00", "0.00", "5000.00"),
			pay(two, "5000.00"),
		}},
		{"TwoFactorAfterSingleFactorHitsOnlyTwoFactorCap", []limitStep{
			pay(single, "1000.00"), pay(two, "1500.00"),
			over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00"),
			pay(two, "2500.00"),
		}},
		{"SingleFactorCountsTowardTwoFactorCap", []limitStep{
			pay(single, "1000.00"), pay(two, "4000.00"),
			over(two, "0.01", "two_factor_daily", "5000.00", "5000.00", "0.00"),
		}},
		{"SingleFactorBoundByTwoFactorCap", []limitStep{
			// 4,500 two-factor leaves 1,000 of the single cap but only 500
			// of the two-factor cap: the latter binds.
			pay(two, "4500.00"),
			over(single, "600.00", "two_factor_daily", "5000.00", "4500.00", "500.00"),
			pay(single, "500.00"),
			over(single, "0.01", "two_factor_daily", "5000.00", "5000.00", "0.00"),
		}},
		{"LeastRemainingCapBinds", []limitStep{
			// Both caps are passed: 500 remains of the single-factor cap
			// but only 200 of the two-factor cap, which is named.
			pay(single, "500.00"), pay(two, "4300.00"),
			over(single, "600.00", "two_factor_daily", "5000.00", "4800.00", "200.00"),
		}},
		{"LeastRemainingCapBindsOwnCap", []limitStep{
			// Both caps are passed and the single-factor cap has less left
			// (100 against 200).
			pay(single, "900.00"), pay(two, "3900.00"),
			over(single, "250.00", "single_factor_daily", "1000.00", "900.00", "100.00"),
		}},
		{"CertificateAbove5000", []limitStep{
			pay(cert, "20000.00"), pay(cert, "30000.00"),
			over(cert, "0.01", "agreed_daily", "50000.00", "50000.00", "0.00"),
		}},
		{"CertificateAtOnce", []limitStep{
			over(cert, "50000.01", "agreed_daily", "50000.00", "0.00", "50000.00"),
			pay(cert, "50000.00"),
		}},
		{"CertificateDoesNotUseTwoFactorCap", []limitStep{
			pay(cert, "10000.00"), pay(two, "5000.00"),
			over(two, "0.01", "two_factor_daily", "5000.00", "5000.00", "0.00"),
			pay(cert, "35000.00"),
			over(cert, "0.01", "agreed_daily", "50000.00", "50000.00", "0.00"),
		}},
		{"WeakerPaymentsCountTowardAgreedLimit", []limitStep{
			pay(single, "1000.00"), pay(two, "4000.00"), pay(cert, "45000.00"),
			over(cert, "0.01", "agreed_daily", "50000.00", "50000.00", "0.00"),
		}},
		{"AgreedLimitBindsTwoFactor", []limitStep{
			pay(cert, "48000.00"),
			over(two, "2000.01", "agreed_daily", "50000.00", "48000.00", "2000.00"),
			pay(two, "2000.00"),
		}},
		{"AdjustedLimit20000", []limitStep{
			{limit: "20000.00"},
			pay(cert, "15000.00"),
			over(cert, "5000.01", "agreed_daily", "20000.00", "15000.00", "5000.00"),
			pay(cert, "5000.00"),
			over(cert, "0.01", "agreed_daily", "20000.00", "20000.00", "0.00"),
		}},
		{"RaisedLimitMidDay", []limitStep{
			pay(cert, "50000.00"),
			over(cert, "100.00", "agreed_daily", "50000.00", "50000.00", "0.00"),
			{limit: "80000.00"},
			pay(cert, "30000.00"),
			over(cert, "0.01", "agreed_daily", "80000.00", "80000.00", "0.00"),
		}},
		{"LoweredLimitBelowUsage", []limitStep{
			pay(cert, "30000.00"),
			{limit: "20000.00"},
			over(single, "1.00", "agreed_daily", "20000.00", "30000.00", "0.00"),
		}},
		{"AgreedLimitBelowSingleCapBindsSingleFactor", []limitStep{
			{limit: "500.00"},
			over(single, "600.00", "agreed_daily", "500.00", "0.00", "500.00"),
			pay(single, "500.00"),
			over(single, "0.01", "agreed_daily", "500.00", "500.00", "0.00"),
		}},
		{"AgreedLimitBelowTwoFactorCap", []limitStep{
			{limit: "3000.00"},
			pay(two, "2000.00"),
			over(two, "1000.01", "agreed_daily", "3000.00", "2000.00", "1000.00"),
		}},
		{"ShanghaiMidnightResets", []limitStep{
			at(lastSecond.Add(-time.Minute), pay(single, "1000.00")),
			at(lastSecond, over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00")),
			at(midnightSH, pay(single, "1000.00")),
			over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00"),
		}},
		{"ShanghaiMidnightResetsEveryCap", []limitStep{
			at(lastSecond.Add(-time.Minute), pay(cert, "50000.00")),
			at(lastSecond, over(single, "0.01", "agreed_daily", "50000.00", "50000.00", "0.00")),
			at(midnightSH, pay(single, "1000.00")),
			pay(two, "4000.00"),
			pay(cert, "45000.00"),
		}},
		{"UTCMidnightIsNotANewDay", []limitStep{
			// 23:30 UTC on the 25th and 00:30 UTC on the 26th are both on
			// the 26th in Shanghai (07:30 and 08:30).
			at(time.Date(2026, 11, 25, 23, 30, 0, 0, time.UTC), pay(single, "1000.00")),
			at(time.Date(2026, 11, 26, 0, 30, 0, 0, time.UTC), over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00")),
		}},
		{"WithdrawalsOutsideCaps", []limitStep{
			pay(single, "1000.00"),
			{withdraw: "20000.00"},
			over(single, "0.01", "single_factor_daily", "1000.00", "1000.00", "0.00"),
			pay(two, "4000.00"),
			{withdraw: "30000.00"},
			pay(cert, "45000.00"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := baseAccount(t)
			h.deposit("900000.00")
			h.bind("6222020200112233445", holder, "tok")
			for i, s := range tc.steps {
				if !s.at.IsZero() {
					h.now = s.at
				}
				switch {
				case s.limit != "":
					// A raise needs a step-up, a lower limit none.
					cmd := AdjustLimit{Limit: s.limit}
					if dec(s.limit).GreaterThan(h.a.AgreedLimit.Amount) {
						cmd = h.authorised(cmd).(AdjustLimit)
					}
					h.must(cmd)
					continue
				case s.withdraw != "":
					h.must(Withdraw{WithdrawalID: "w", Amount: s.withdraw, DeviceID: deviceApp, Proofs: h.proofs(nil, fPassword)})
					continue
				}
				pi := h.initiate(s.amount)
				evs, err := h.confirm(pi.PaymentID, levelFactors[s.level]...)
				if s.code == "" {
					if err != nil {
						t.Fatalf("step %d: pay %s at %s: %v", i, s.amount, s.level, err)
					}
					if c := confirmed(t, evs); c.VerificationLevel != s.level {
						t.Fatalf("step %d: level %s, want %s", i, c.VerificationLevel, s.level)
					}
					continue
				}
				e := wantCode(t, err, s.code)
				wantDetails(t, e, s.details)
				wantTypes(t, evs, TypePaymentRejected)
				r := evs[0].(PaymentRejected)
				if r.Code != s.code || r.Details["cap"] != s.details["cap"] || r.Details["remaining"] != s.details["remaining"] {
					t.Errorf("step %d: rejection %+v", i, r)
				}
			}
		})
	}
}

func TestDayUsageAndDailyCap(t *testing.T) {
	h := baseAccount(t)
	for _, s := range []limitStep{pay(single, "100.00"), pay(two, "200.00"), pay(cert, "300.00")} {
		if _, err := h.pay(s.amount, levelFactors[s.level]...); err != nil {
			t.Fatal(err)
		}
	}
	single, noCert, all := h.a.DayUsage(h.now)
	if single.String() != "100" || noCert.String() != "300" || all.String() != "600" {
		t.Errorf("DayUsage = %s, %s, %s", single, noCert, all)
	}
	tests := []struct {
		level, limit, used string
	}{
		{LevelSingleFactor, "1000.00", "100.00"},
		{LevelTwoFactor, "5000.00", "300.00"},
		{LevelTwoFactorCertificate, "50000.00", "600.00"},
	}
	for _, tc := range tests {
		t.Run(tc.level, func(t *testing.T) {
			limit, used := h.a.DailyCap(h.p, h.now, tc.level)
			if limit.String() != tc.limit || used.String() != tc.used || limit.Currency != CNY {
				t.Errorf("DailyCap = %s, %s; want %s, %s", limit, used, tc.limit, tc.used)
			}
		})
	}
	t.Run("NextDay", func(t *testing.T) {
		next := h.now.Add(24 * time.Hour)
		if s, n, a := h.a.DayUsage(next); !s.IsZero() || !n.IsZero() || !a.IsZero() {
			t.Errorf("next day usage %s %s %s", s, n, a)
		}
		if _, used := h.a.DailyCap(h.p, next, LevelSingleFactor); used.String() != "0.00" {
			t.Errorf("next day used %s", used)
		}
	})
	t.Run("ReplayGivesSameUsage", func(t *testing.T) {
		a := h.replay()
		s, n, al := a.DayUsage(h.now)
		if !s.Equal(single) || !n.Equal(noCert) || !al.Equal(all) {
			t.Errorf("replayed usage %s %s %s", s, n, al)
		}
	})
}

// TestLimitsUseInstitutionDay checks that the account's calendar day comes
// from the time zone it was built with, not UTC, even when a payment is
// recorded with a time in another zone.
func TestLimitsUseInstitutionDay(t *testing.T) {
	h := baseAccount(t)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	// 18:00 Shanghai on the 25th, expressed in New York time (05:00).
	h.now = t0.In(ny)
	if _, err := h.pay("1000.00", fPassword); err != nil {
		t.Fatal(err)
	}
	// 07:59 Shanghai on the 26th (the 25th in New York): a new day.
	h.now = time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC).In(ny)
	if _, err := h.pay("1000.00", fPassword); err != nil {
		t.Fatalf("new Shanghai day: %v", err)
	}
}
