package doctor

import (
	"strings"
	"testing"
	"time"

	"nixpki/internal/gate"
)

func TestGateCRLChecks(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	max := 8 * day
	for _, tc := range []struct {
		age  time.Duration
		want Status
		says string
	}{
		{time.Hour, OK, "until max_crl_age 8d"},
		{8*day - 12*time.Hour, Warning, "fails closed"},
		{9 * day, Critical, "refuses every signature"},
	} {
		st := &gate.Stats{MaxCRLAge: max, CRLs: []gate.CRLStat{
			{Issuer: "Lab Root CA", ThisUpdate: now.Add(-100 * day)}, // the root's: not gating
			{Issuer: "Lab Nix Intermediate", ThisUpdate: now.Add(-tc.age), Gating: true},
		}}
		cs := gateCRLChecks(st, now)
		if len(cs) != 1 || cs[0].Status != tc.want || !strings.Contains(cs[0].Detail, tc.says) || !strings.Contains(cs[0].Detail, "Lab Nix Intermediate") {
			t.Errorf("CRL age %s: %+v, want one %s check saying %q", tc.age, cs, tc.want, tc.says)
		}
	}
	if cs := gateCRLChecks(&gate.Stats{MaxCRLAge: max}, now); len(cs) != 1 || cs[0].Status != Critical {
		t.Errorf("no CRL held: %+v, want critical", cs)
	}
}

func TestReportStatus(t *testing.T) {
	var r Report
	r.Add(Check{Status: OK}, Check{Status: Warning}, Check{Status: Info})
	if r.Status != Warning || len(r.Checks) != 3 {
		t.Errorf("status %s of %d checks, want warning of 3", r.Status, len(r.Checks))
	}
}
