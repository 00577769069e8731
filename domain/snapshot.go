package domain

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// AccountSnapshotSchema versions the snapshot of the account aggregate.
// Raise it whenever Apply folds an event differently or the aggregate
// gains state: a snapshot of another version is ignored and the stream is
// read in full, so a rule change never trusts state folded by old rules.
const AccountSnapshotSchema = 2

// accountState is every field of Account, as a snapshot stores it.
// TestSnapshotCoversAccount fails when Account gains a field it lacks.
type accountState struct {
	ID             string                      `json:"id"`
	HolderName     string                      `json:"holder_name"`
	Currency       Currency                    `json:"currency"`
	Kind           string                      `json:"kind"`
	Status         string                      `json:"status"`
	AgreedLimit    Money                       `json:"agreed_limit"`
	Phone          string                      `json:"phone"`
	Version        int64                       `json:"version"`
	LastPosition   int64                       `json:"last_position"`
	Factors        map[string]Factor           `json:"factors"`
	Failures       int                         `json:"failures"`
	LockedUntil    time.Time                   `json:"locked_until"`
	OTPLast        map[string]int64            `json:"otp_last"`
	Bank           *BankAccountBound           `json:"bank"`
	Pending        map[string]PaymentInitiated `json:"pending"`
	Finished       map[string]string           `json:"finished"`
	FinOrder       []string                    `json:"fin_order"`
	Moves          []moveState                 `json:"moves"`
	MovesNet       decimal.Decimal             `json:"moves_net"`
	Usage          usageState                  `json:"usage"`
	Sessions       []Session                   `json:"sessions"`
	StaffSuspended bool                        `json:"staff_suspended"`
	DepositRefs    map[string]string           `json:"deposit_refs"`
	Devices        map[string]Device           `json:"devices"`
	Recovered      map[string]decimal.Decimal  `json:"recovered"`
	Claims         map[string]string           `json:"claims"`
	LastAt         time.Time                   `json:"last_at"`
	Erased         bool                        `json:"erased"`
}

type moveState struct {
	Position int64           `json:"position"`
	Before   decimal.Decimal `json:"before"`
}

type usageState struct {
	Day    int             `json:"day"`
	Single decimal.Decimal `json:"single"`
	Two    decimal.Decimal `json:"two"`
	Cert   decimal.Decimal `json:"cert"`
	NoCert decimal.Decimal `json:"no_cert"`
	All    decimal.Decimal `json:"all"`
}

// MarshalSnapshot returns the aggregate's state as a snapshot payload
// (AccountSnapshotSchema): the same state RestoreAccount gives back.
func (a *Account) MarshalSnapshot() ([]byte, error) {
	s := accountState{ID: a.ID, HolderName: a.HolderName, Currency: a.Currency, Kind: a.Kind, Status: a.Status,
		AgreedLimit: a.AgreedLimit, Phone: a.Phone, Version: a.Version, LastPosition: a.LastPosition,
		Factors: make(map[string]Factor, len(a.factors)), Failures: a.failures, LockedUntil: a.lockedUntil,
		OTPLast: a.otpLast, Bank: a.bank, Pending: a.pending, Finished: a.finished, FinOrder: a.finOrder,
		Moves: make([]moveState, len(a.moves)), MovesNet: a.movesNet,
		Usage:    usageState{Day: a.usage.day, Single: a.usage.single, Two: a.usage.two, Cert: a.usage.cert, NoCert: a.usage.noCert, All: a.usage.all},
		Sessions: a.sessions, StaffSuspended: a.staffSuspended, DepositRefs: a.depositRefs,
		Devices: make(map[string]Device, len(a.devices)), Recovered: a.recovered, Claims: a.claims,
		LastAt: a.lastAt, Erased: a.erased}
	for id, f := range a.factors {
		s.Factors[id] = *f
	}
	for id, d := range a.devices {
		s.Devices[id] = *d
	}
	for i, m := range a.moves {
		s.Moves[i] = moveState{Position: m.position, Before: m.before}
	}
	return json.Marshal(s)
}

// RestoreAccount rebuilds an aggregate from a snapshot payload of
// AccountSnapshotSchema; loc is the institution's time zone, as for
// NewAccount.
func RestoreAccount(payload []byte, loc *time.Location) (*Account, error) {
	var s accountState
	if err := json.Unmarshal(payload, &s); err != nil {
		return nil, fmt.Errorf("account snapshot: %w", err)
	}
	a := NewAccount(loc)
	a.ID, a.HolderName, a.Currency, a.Kind, a.Status = s.ID, s.HolderName, s.Currency, s.Kind, s.Status
	a.AgreedLimit, a.Phone, a.Version, a.LastPosition = s.AgreedLimit, s.Phone, s.Version, s.LastPosition
	a.failures, a.lockedUntil, a.bank, a.finOrder = s.Failures, s.LockedUntil, s.Bank, s.FinOrder
	a.movesNet, a.sessions, a.staffSuspended = s.MovesNet, s.Sessions, s.StaffSuspended
	a.lastAt, a.erased = s.LastAt, s.Erased
	a.usage = dayUsage{day: s.Usage.Day, single: s.Usage.Single, two: s.Usage.Two, cert: s.Usage.Cert, noCert: s.Usage.NoCert, all: s.Usage.All}
	for id, f := range s.Factors {
		f := f
		a.factors[id] = &f
	}
	for id, d := range s.Devices {
		d := d
		a.devices[id] = &d
	}
	for _, m := range s.Moves {
		a.moves = append(a.moves, ownMove{position: m.Position, before: m.Before})
	}
	fill(a.otpLast, s.OTPLast)
	fill(a.pending, s.Pending)
	fill(a.finished, s.Finished)
	fill(a.depositRefs, s.DepositRefs)
	fill(a.recovered, s.Recovered)
	fill(a.claims, s.Claims)
	return a, nil
}

// fill copies src into dst, which NewAccount made.
func fill[K comparable, V any](dst, src map[K]V) {
	for k, v := range src {
		dst[k] = v
	}
}
