package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// scrape fetches /metrics, checks it with promtool and returns each series' value,
// keyed as the text format writes it: name{label="value",...} (labels sorted).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s\n%s", res.Status, body)
	}
	cmd := exec.Command(testutil.NeedTool(t, "promtool"), "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// wantMetric checks one series' value; a missing series counts as absent, not 0.
func wantMetric(t *testing.T, m map[string]float64, series string, want float64) {
	t.Helper()
	got, ok := m[series]
	if !ok {
		t.Errorf("%s: absent, want %v", series, want)
	} else if got != want {
		t.Errorf("%s = %v, want %v", series, got, want)
	}
}

// TestServeMetrics scrapes a running `nixpki serve --metrics-listen` as Prometheus
// would and follows the numbers through an issuance, a revocation, CRL fetches and
// an ACME error.
func TestServeMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	run(t, false, "init", "--dir", dir, "--name", "Metrics", "--dns", "localhost", "--ip", "127.0.0.1")
	maddr := testutil.FreePort(t)
	httpsAddr, httpAddr := serve(t, dir, "--metrics-listen", maddr)

	m := scrape(t, maddr)
	root, _ := x509util.ReadCertFile(filepath.Join(dir, "root.crt"))
	tlsInter, _ := x509util.ReadCertFile(filepath.Join(dir, "tls-intermediate.crt"))
	wantMetric(t, m, `nixpki_ca_certificate_not_after_timestamp_seconds{ca="root"}`, float64(root.NotAfter.Unix()))
	wantMetric(t, m, `nixpki_ca_certificate_not_after_timestamp_seconds{ca="tls"}`, float64(tlsInter.NotAfter.Unix()))
	wantMetric(t, m, `nixpki_certificates_issued_total{path="direct",profile="server"}`, 1) // serve's own
	if _, ok := m[`nixpki_certificates_issued_total{path="direct",profile="cli"}`]; ok {
		t.Error("a direct issuance counted before any")
	}
	if !strings.Contains(strings.Join(seriesOf(m), "\n"), `nixpki_build_info{goversion="go`) {
		t.Error("no nixpki_build_info")
	}

	// An issuance: counted, and its name tracked with the certificate's expiry.
	tmp := t.TempDir()
	run(t, false, "cert", "issue", "--dir", dir, "--san", "web.localhost", "--valid", "100h",
		"--out-cert", filepath.Join(tmp, "web.crt"), "--out-key", filepath.Join(tmp, "web.key"))
	web, _ := x509util.ReadCertFile(filepath.Join(tmp, "web.crt"))
	m = scrape(t, maddr)
	wantMetric(t, m, `nixpki_certificates_issued_total{path="direct",profile="cli"}`, 1)
	wantMetric(t, m, `nixpki_certificates_revoked_total{path="direct",profile="cli"}`, 0)
	wantMetric(t, m, `nixpki_name_newest_not_after_timestamp_seconds{name="web.localhost"}`, float64(web.NotAfter.Unix()))
	wantMetric(t, m, `nixpki_name_dropped_names`, 0)

	// A CRL fetch builds the CRL: number 1; a revocation and a fetch: number 2.
	fetch(t, "http://"+httpAddr+"/crl/tls.crl", filepath.Join(tmp, "1.crl"))
	m = scrape(t, maddr)
	wantMetric(t, m, `nixpki_crl_number{crl="tls"}`, 1)
	if next := m[`nixpki_crl_next_update_timestamp_seconds{crl="tls"}`]; next < float64(time.Now().Add(6*24*time.Hour).Unix()) {
		t.Errorf("CRL nextUpdate %v: want about a week ahead", next)
	}
	run(t, false, "cert", "revoke", "--dir", dir, x509util.SerialHex(web.SerialNumber))
	fetch(t, "http://"+httpAddr+"/crl/tls.crl", filepath.Join(tmp, "2.crl"))
	m = scrape(t, maddr)
	wantMetric(t, m, `nixpki_certificates_revoked_total{path="direct",profile="cli"}`, 1)
	wantMetric(t, m, `nixpki_crl_number{crl="tls"}`, 2)
	wantMetric(t, m, `nixpki_http_requests_total{code="200",endpoint="GET /crl/{name}"}`, 2)
	wantMetric(t, m, `nixpki_http_request_duration_seconds_count{endpoint="GET /crl/{name}"}`, 2)
	if _, ok := m[`nixpki_name_newest_not_after_timestamp_seconds{name="web.localhost"}`]; ok {
		t.Error("a revoked certificate still counts as its name's newest")
	}

	// ACME: requests counted by route pattern, problems by type.
	pool := x509.NewCertPool()
	pool.AddCert(root)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for range 3 {
		res, err := client.Post("https://"+httpsAddr+"/acme/acme/new-account", "application/jose+json", strings.NewReader("{"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	res, err := client.Head("https://" + httpsAddr + "/acme/acme/new-nonce")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	m = scrape(t, maddr)
	wantMetric(t, m, `nixpki_http_problems_total{type="malformed"}`, 3)
	wantMetric(t, m, `nixpki_http_requests_total{code="400",endpoint="POST /acme/{prov}/new-account"}`, 3)
	wantMetric(t, m, `nixpki_http_requests_total{code="200",endpoint="GET /acme/{prov}/new-nonce"}`, 1)
}

func seriesOf(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestGateMetrics scrapes a running `nixpki gate serve --metrics-listen` through an
// admission and a rejection.
func TestGateMetrics(t *testing.T) {
	maddr := testutil.FreePort(t)
	r := newGateRigWith(t, nil, nil, "--metrics-listen", maddr)
	m := scrape(t, maddr)
	wantMetric(t, m, `nixpki_gate_paths{state="admitted"}`, 0)
	wantMetric(t, m, `nixpki_gate_max_crl_age_seconds`, (8 * 24 * time.Hour).Seconds())
	entries := m[`nixpki_gate_log_entries`]

	app, _ := r.build("app")
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, app); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	m = scrape(t, maddr)
	wantMetric(t, m, `nixpki_gate_paths{state="admitted"}`, 2)
	wantMetric(t, m, `nixpki_gate_verdicts_total{reason="",verdict="admitted"}`, 2)
	if m[`nixpki_gate_log_entries`] <= entries {
		t.Errorf("log entries %v after an admission, %v before", m[`nixpki_gate_log_entries`], entries)
	}
	// The CRL pushed is fresh: its age is small and the gate fails closed in about
	// max_crl_age.
	crlAge, left := -1.0, -1.0
	for k, v := range m {
		if strings.HasPrefix(k, "nixpki_gate_crl_age_seconds{") {
			crlAge = v
		}
		if strings.HasPrefix(k, "nixpki_gate_crl_fail_closed_in_seconds{") {
			left = v
		}
	}
	if crlAge < 0 || crlAge > 600 || left < (8*24*time.Hour-10*time.Minute).Seconds() || left > (8*24*time.Hour+2*time.Minute).Seconds() {
		t.Errorf("CRL age %v s, fails closed in %v s: want a fresh CRL and about 8 days", crlAge, left)
	}

	// An uncertified key's upload is rejected for its signatures.
	other, _ := r.build("other")
	if out, err := r.rawCopy("mallory-1", other); err == nil {
		t.Fatalf("an uncertified key's copy succeeded:\n%s", out)
	}
	m = scrape(t, maddr)
	if n := m[`nixpki_gate_verdicts_total{reason="signatures",verdict="rejected"}`]; n < 1 {
		t.Errorf("rejections for signatures = %v, want at least 1", n)
	}
	if n := m[`nixpki_gate_rejected_paths`]; n < 1 {
		t.Errorf("rejected paths = %v, want at least 1", n)
	}
	wantMetric(t, m, `nixpki_gate_paths{state="admitted"}`, 2)
	wantMetric(t, m, `nixpki_http_requests_total{code="200",endpoint="PUT /{file}"}`, 2)

	// nixpki doctor --gate on the running gate: fresh CRL, verified log.
	code, out := doctorRun(t, "--gate", r.gateDir)
	if code != 0 {
		t.Errorf("doctor --gate: exit %d:\n%s", code, out)
	}
	wantIn(t, "doctor --gate", out, "gate CRL age", "until max_crl_age 8d", "gate log", "verifies")
}
