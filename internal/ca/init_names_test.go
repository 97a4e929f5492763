package ca

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/config"
)

// Init refuses server names its own name constraints exclude (serve could not issue
// its HTTPS certificate), and creates nothing.
func TestInitRefusesServerNameOutsideConstraints(t *testing.T) {
	for _, tc := range []struct {
		dns, ips, permDNS, permIP []string
		want                      string
	}{
		{[]string{"ca.example.com"}, nil, []string{"lab.internal"}, nil, "server name ca.example.com is outside the CA's name constraints (permitted DNS: lab.internal)"},
		{[]string{"ca.lab.internal"}, []string{"10.0.0.1"}, []string{"lab.internal"}, []string{"100.64.0.0/10"}, "server name 10.0.0.1 is outside"},
	} {
		cfg := testConfig()
		cfg.DNSNames, cfg.IPAddresses, cfg.PermittedDNS, cfg.PermittedIP = tc.dns, tc.ips, tc.permDNS, tc.permIP
		dir := filepath.Join(t.TempDir(), "ca")
		_, err := Init(context.Background(), InitOptions{Dir: dir, Config: cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--permitted-dns/--permitted-ip") {
			t.Errorf("init with %v %v under %v %v: %v; want %q and the way out", tc.dns, tc.ips, tc.permDNS, tc.permIP, err, tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("a refused init left %s behind", dir)
		}
	}
}

// The default external URL names what other machines can reach; a CA with only
// loopback names gets a note saying its URLs serve this machine alone.
func TestInitExternalURLPrefersReachableName(t *testing.T) {
	for _, tc := range []struct {
		dns, ips []string
		wantURL  string
		wantNote bool
	}{
		{[]string{"localhost", "ca.lab.internal"}, nil, "http://ca.lab.internal:8080", false},
		{nil, []string{"127.0.0.1", "100.64.0.1"}, "http://100.64.0.1:8080", false},
		{[]string{"localhost"}, []string{"::1"}, "http://localhost:8080", true},
	} {
		cfg := testConfig()
		cfg.DNSNames, cfg.IPAddresses, cfg.ExternalURL = tc.dns, tc.ips, ""
		dir := filepath.Join(t.TempDir(), "ca")
		res, err := Init(context.Background(), InitOptions{Dir: dir, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got.ExternalURL != tc.wantURL || (len(res.Warnings) > 0) != tc.wantNote {
			t.Errorf("names %v %v: external_url %s, notes %q; want %s, note %v", tc.dns, tc.ips, got.ExternalURL, res.Warnings, tc.wantURL, tc.wantNote)
		}
	}
}
