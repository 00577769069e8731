package reserves

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
)

// Policy is the institution's versioned provisioning and compensation
// policy. Every provision names Version, so a figure can be traced to the
// policy that produced it.
type Policy struct {
	Version string `json:"version"`
	// FeeShare is the share of a day's fee income moved into the reserve,
	// VolumeShare the share of the day's confirmed payment volume.
	FeeShare    decimal.Decimal `json:"fee_share"`
	VolumeShare decimal.Decimal `json:"volume_share"`
	// Floor is the least the reserve holds after a close: a close tops it
	// up to Floor from own funds, and a release may not go below it. In
	// the currency's units.
	Floor decimal.Decimal `json:"floor"`
	// ClaimWindow is how long after a payment its loss is compensated in
	// advance; older losses are investigated first.
	ClaimWindow time.Duration `json:"claim_window"`
	// AdvanceCap is the largest loss compensated in advance (zero: no
	// cap); a larger one is investigated first.
	AdvanceCap decimal.Decimal `json:"advance_cap"`
	// DisputeServiceTime is how long after a dispute is opened its answer
	// is due (Art. 41); later it is overdue.
	DisputeServiceTime time.Duration `json:"dispute_service_time"`
	// Location decides what a calendar day is for a close, as for the
	// daily limits.
	Location *time.Location `json:"-"`
}

// DefaultPolicy provisions a fifth of fee income and 0.05% of volume each
// day, keeps no floor, compensates in advance losses of up to 50,000 on
// payments of the last year, and answers disputes within 15 days.
func DefaultPolicy(loc *time.Location) Policy {
	return Policy{
		Version:     "default-1",
		FeeShare:    decimal.RequireFromString("0.2"),
		VolumeShare: decimal.RequireFromString("0.0005"),
		Floor:       decimal.Zero,
		ClaimWindow: 365 * 24 * time.Hour,
		AdvanceCap:  decimal.NewFromInt(50000),
		// Fifteen days to answer a dispute.
		DisputeServiceTime: 15 * 24 * time.Hour,
		Location:           loc,
	}
}

// maxVolumeShare bounds the volume share: a provision above a tenth of the
// day's payments is a configuration mistake.
var maxVolumeShare = decimal.New(1, -1)

// Validate checks the policy before a server or a close uses it.
func (p Policy) Validate() error {
	switch {
	case p.Version == "" || len(p.Version) > 40:
		return fmt.Errorf("reserve policy: version must be 1..40 characters")
	case p.FeeShare.IsNegative() || p.FeeShare.GreaterThan(decimal.NewFromInt(1)):
		return fmt.Errorf("reserve policy %s: fee share %s must be between 0 and 1", p.Version, p.FeeShare)
	case p.VolumeShare.IsNegative() || p.VolumeShare.GreaterThan(maxVolumeShare):
		return fmt.Errorf("reserve policy %s: volume share %s must be between 0 and %s", p.Version, p.VolumeShare, maxVolumeShare)
	case p.Floor.IsNegative():
		return fmt.Errorf("reserve policy %s: floor %s must not be negative", p.Version, p.Floor)
	case p.AdvanceCap.IsNegative():
		return fmt.Errorf("reserve policy %s: advance cap %s must not be negative", p.Version, p.AdvanceCap)
	case p.DisputeServiceTime < time.Hour || p.DisputeServiceTime > 90*24*time.Hour:
		return fmt.Errorf("reserve policy %s: dispute service time %s must be between 1h and 90 days", p.Version, p.DisputeServiceTime)
	case p.ClaimWindow <= 0:
		return fmt.Errorf("reserve policy %s: claim window must be positive", p.Version)
	case p.Location == nil:
		return fmt.Errorf("reserve policy %s: no time zone", p.Version)
	}
	return nil
}

// Day is a calendar day in the institution's zone, "2006-01-02".
type Day string

// ParseDay checks a day given by a user.
func ParseDay(s string) (Day, error) {
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return "", domain.Invalid("day", fmt.Sprintf("day %q is not a date such as 2026-03-01", s))
	}
	return Day(s), nil
}

// DayOf returns the day t falls on in loc.
func DayOf(t time.Time, loc *time.Location) Day { return Day(t.In(loc).Format(time.DateOnly)) }

// Bounds returns the first instant of the day and of the next in loc.
func (d Day) Bounds(loc *time.Location) (start, end time.Time) {
	t, err := time.ParseInLocation(time.DateOnly, string(d), loc)
	if err != nil {
		return time.Time{}, time.Time{}
	}
	return t, t.AddDate(0, 0, 1)
}
