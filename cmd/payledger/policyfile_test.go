package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/payledger/payledger/domain"
)

func TestPolicyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := domain.DefaultPolicy(time.UTC)
	rp, err := loadPolicyFile(write("ok.json", `{"fees": {"version": "fees-2027", "rate": "0.001", "min": "0.01", "max": "20"},
		"reserve": {"version": "reserve-2027", "fee_share": "0.3", "volume_share": "0.001", "floor": "10000", "advance_cap": "20000",
		"claim_window": "4380h", "dispute_service_time": "168h"}}`), &p)
	if err != nil {
		t.Fatal(err)
	}
	if p.Fees.Version != "fees-2027" || p.Fees.FeeFor(domain.MustMoney("100.00", domain.CNY)).String() != "0.10" {
		t.Errorf("fees %+v", p.Fees)
	}
	if rp.Version != "reserve-2027" || rp.FeeShare.String() != "0.3" || rp.Floor.String() != "10000" || rp.ClaimWindow != 4380*time.Hour ||
		rp.DisputeServiceTime != 168*time.Hour || rp.Location != time.UTC {
		t.Errorf("reserve policy %+v", rp)
	}
	for name, body := range map[string]string{
		"unknown.json":   `{"fees": {"version": "f", "rate": "0.001", "surprise": 1}}`,
		"negative.json":  `{"fees": {"version": "f", "rate": "-0.001"}}`,
		"share.json":     `{"reserve": {"version": "r", "fee_share": "1.5", "claim_window": "24h", "dispute_service_time": "24h"}}`,
		"duration.json":  `{"reserve": {"version": "r", "claim_window": "a year"}}`,
		"noversion.json": `{"fees": {"rate": "0.001"}}`,
	} {
		q := domain.DefaultPolicy(time.UTC)
		if _, err := loadPolicyFile(write(name, body), &q); err == nil || !strings.Contains(err.Error(), "--policy") {
			t.Errorf("%s: %v, want a --policy error", name, err)
		}
	}
	q := domain.DefaultPolicy(time.UTC)
	if rp, err := loadPolicyFile("", &q); err != nil || rp.Version != "default-1" || !q.Fees.Free() {
		t.Errorf("no file: %+v %v", rp, err)
	}
}
