package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/shopspring/decimal"

	"github.com/payledger/payledger/domain"
	"github.com/payledger/payledger/reserves"
)

// policyFile is the JSON of --policy: the fee schedule and the reserve's
// provisioning and compensation policy, each with the version that every
// fee and provision names. Amounts and shares are decimal strings,
// durations Go durations ("8760h").
type policyFile struct {
	Fees    *domain.FeeSchedule `json:"fees"`
	Reserve *struct {
		Version            string          `json:"version"`
		FeeShare           decimal.Decimal `json:"fee_share"`
		VolumeShare        decimal.Decimal `json:"volume_share"`
		Floor              decimal.Decimal `json:"floor"`
		AdvanceCap         decimal.Decimal `json:"advance_cap"`
		ClaimWindow        string          `json:"claim_window"`
		DisputeServiceTime string          `json:"dispute_service_time"`
	} `json:"reserve"`
}

// maxPolicyFile bounds the file read.
const maxPolicyFile = 64 << 10

// loadPolicyFile applies --policy to the domain policy's fees and returns
// the reserve policy (the default where the file names none).
func loadPolicyFile(path string, p *domain.Policy) (reserves.Policy, error) {
	rp := reserves.DefaultPolicy(p.Location)
	if path == "" {
		return rp, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return rp, fmt.Errorf("--policy: %w", err)
	}
	if len(raw) > maxPolicyFile {
		return rp, fmt.Errorf("--policy: %s is larger than %d bytes", path, maxPolicyFile)
	}
	var f policyFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return rp, fmt.Errorf("--policy %s: %w", path, err)
	}
	if f.Fees != nil {
		if err := f.Fees.Validate(); err != nil {
			return rp, fmt.Errorf("--policy %s: %w", path, err)
		}
		p.Fees = *f.Fees
	}
	if r := f.Reserve; r != nil {
		rp.Version, rp.FeeShare, rp.VolumeShare, rp.Floor, rp.AdvanceCap = r.Version, r.FeeShare, r.VolumeShare, r.Floor, r.AdvanceCap
		for _, d := range []struct {
			name string
			v    string
			dst  *time.Duration
		}{{"claim_window", r.ClaimWindow, &rp.ClaimWindow}, {"dispute_service_time", r.DisputeServiceTime, &rp.DisputeServiceTime}} {
			if d.v == "" {
				continue
			}
			if *d.dst, err = time.ParseDuration(d.v); err != nil {
				return rp, fmt.Errorf("--policy %s: reserve.%s: %w", path, d.name, err)
			}
		}
		if err := rp.Validate(); err != nil {
			return rp, fmt.Errorf("--policy %s: %w", path, err)
		}
	}
	return rp, nil
}
