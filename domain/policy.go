package domain

import (
	"crypto/ed25519"
	"time"
)

// Policy holds the institution's configurable rules. It is passed to every
// decision, so tests can state exactly which rules apply.
type Policy struct {
	// Location decides what a calendar "day" is for daily limits (R10).
	Location *time.Location
	// SingleFactorDailyCap and TwoFactorDailyCap are the regulatory caps for
	// payments verified with fewer than two categories and with two or more
	// categories but no certificate or e-signature (R10).
	SingleFactorDailyCap Money
	TwoFactorDailyCap    Money
	// DefaultAgreedLimit applies until customer and institution agree another
	// (LimitAdjusted).
	DefaultAgreedLimit Money
	// MaxFailures consecutive failed logins or verifications lock access for
	// LockDuration (R9).
	MaxFailures  int
	LockDuration time.Duration
	// SessionTTL is how long a login session lasts at most (R9), and
	// SessionIdle how long it lasts without a request.
	SessionTTL  time.Duration
	SessionIdle time.Duration
	// CoolingOff is how long a factor enrolled or reset without an
	// operator's identity check waits before it can confirm a payment or
	// a withdrawal, so that whoever took over a session cannot add a
	// factor and move money before the holder hears of it (R26).
	CoolingOff time.Duration
	// ChallengeTTL is how long an initiated payment may be confirmed; the
	// one-time proof it asks for expires with it (R7).
	ChallengeTTL time.Duration
	// BiometricProviderKey verifies biometric attestations (R5, R8): the
	// ledger never sees a template, only the provider's signature.
	BiometricProviderKey ed25519.PublicKey
	// Fees prices payments; the zero schedule charges nothing.
	Fees FeeSchedule
	// Secrets opens sealed TOTP seeds.
	Secrets SecretOpener
}

// DefaultPolicy returns the defaults of REQUIREMENTS.md: Asia/Shanghai days,
// caps of 1,000 and 5,000 CNY, an agreed limit of 50,000 CNY, 5 failures
// lock for 30 minutes, sessions of at most 8 hours that end after 15 idle
// minutes, 5-minute challenges and a 24-hour cooling-off for new factors.
// loc must be Asia/Shanghai or another zone loaded by the caller (the domain
// does no I/O).
func DefaultPolicy(loc *time.Location) Policy {
	return Policy{
		Location:             loc,
		SingleFactorDailyCap: MustMoney("1000.00", CNY),
		TwoFactorDailyCap:    MustMoney("5000.00", CNY),
		DefaultAgreedLimit:   MustMoney("50000.00", CNY),
		MaxFailures:          5,
		LockDuration:         30 * time.Minute,
		SessionTTL:           8 * time.Hour,
		SessionIdle:          15 * time.Minute,
		CoolingOff:           24 * time.Hour,
		ChallengeTTL:         5 * time.Minute,
	}
}
