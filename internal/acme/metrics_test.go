package acme

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"nixpki/internal/monitor"
)

// TestMetricsAfterIssuance: an ACME issuance and a revocation show in the CA's
// metrics by path and profile, with the order and the challenge by status.
func TestMetricsAfterIssuance(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.ForCA(e.ca).Collector())
	cl := e.client("acme")
	chain, _ := e.issue(cl, http01, "metered.test")
	e.issue(cl, dns01, "other.test")
	if err := cl.RevokeCert(t.Context(), nil, chain[0], 0); err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	for series, want := range map[string]string{
		`nixpki_certificates_issued_total{path="acme",profile="tlsserver"}`:         "2",
		`nixpki_certificates_revoked_total{path="acme",profile="tlsserver"}`:        "1",
		`nixpki_acme_orders{profile="tlsserver",provisioner="acme",status="valid"}`: "2",
		`nixpki_acme_challenges{provisioner="acme",status="valid",type="http-01"}`:  "1",
		`nixpki_acme_challenges{provisioner="acme",status="valid",type="dns-01"}`:   "1",
		`nixpki_name_newest_not_after_timestamp_seconds{name="other.test"}`:         "",
	} {
		v, ok := got[series]
		if !ok || (want != "" && v != want) {
			t.Errorf("%s = %q (present %v), want %q", series, v, ok, want)
		}
	}
	if _, ok := got[`nixpki_name_newest_not_after_timestamp_seconds{name="metered.test"}`]; ok {
		t.Error("a name whose only certificate is revoked is still tracked")
	}
}

// gather renders a registry in the text format and returns each series' value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]string{}
	for _, line := range strings.Split(b.String(), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		out[line[:i]] = line[i+1:]
	}
	return out
}
