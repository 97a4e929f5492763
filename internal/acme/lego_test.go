package acme

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/server"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// TestLego runs Debian's lego (the client NixOS's security.acme uses) against the
// HTTPS server as `nixpki serve` assembles it: obtain, renew and revoke, for a DNS
// name and an IP address, through http-01, tls-alpn-01 and dns-01 (names only: IP
// identifiers have no dns-01).
func TestLego(t *testing.T) {
	legoBin := testutil.NeedTool(t, "lego")
	ctx := context.Background()
	c, log := newTestCA(t)
	dns := newTestDNS(t)
	httpPort, tlsPort := freePort(t), freePort(t)
	h, err := New(Options{CA: c, Log: log, Config: config.ACME{HTTPPort: httpPort, TLSPort: tlsPort, Resolver: dns.addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := &server.Server{CA: c, Log: log, Mounts: map[string]http.Handler{"/acme/": h}}
	sctx, stop := context.WithCancel(ctx)
	addrs := make(chan server.Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx, "127.0.0.1:0", "", func(a server.Addrs) { addrs <- a }) }()
	defer func() { stop(); <-done }()
	var a server.Addrs
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	directory := "https://localhost:" + strconv.Itoa(a.HTTPS.(*net.TCPAddr).Port) + "/acme/acme/directory"

	hook := filepath.Join(t.TempDir(), "dns-hook.sh")
	script := "#!/bin/sh\n# lego exec provider: present|cleanup FQDN VALUE\ncase \"$1\" in\n" +
		"present) printf '%s' \"$3\" > '" + dns.dir + "/'\"$2\" ;;\ncleanup) rm -f '" + dns.dir + "/'\"$2\" ;;\nesac\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "LEGO_CA_CERTIFICATES="+ca.CertPath(c.Dir, ca.IssuerRoot), "EXEC_PATH="+hook,
		"EXEC_PROPAGATION_TIMEOUT=30", "EXEC_POLLING_INTERVAL=1")
	for _, tc := range []struct {
		name, domain string
		flags        []string
	}{
		{"http-01 dns", "app.test", []string{"--http", "--http.port", "127.0.0.1:" + strconv.Itoa(httpPort)}},
		{"http-01 ip", "127.0.0.1", []string{"--http", "--http.port", "127.0.0.1:" + strconv.Itoa(httpPort)}},
		{"tls-alpn-01 dns", "tls.app.test", []string{"--tls", "--tls.port", "127.0.0.1:" + strconv.Itoa(tlsPort)}},
		{"tls-alpn-01 ip", "127.0.0.1", []string{"--tls", "--tls.port", "127.0.0.1:" + strconv.Itoa(tlsPort)}},
		{"dns-01 dns", "dns.app.test", []string{"--dns", "exec", "--dns.resolvers", dns.addr(), "--dns.disable-cp"}},
	} {
		path := t.TempDir()
		lego := func(args ...string) {
			t.Helper()
			all := append([]string{"--server", directory, "--accept-tos", "--email", "ops@example.com", "--path", path,
				"--domains", tc.domain}, tc.flags...)
			cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(cctx, legoBin, append(all, args...)...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: lego %s: %v\n%s", tc.name, strings.Join(args, " "), err, out)
			}
		}
		certFile := filepath.Join(path, "certificates", tc.domain+".crt")
		lego("run")
		first := readLeaf(t, certFile)
		lego("renew", "--days", "91", "--no-random-sleep")
		second := readLeaf(t, certFile)
		if first.SerialNumber.Cmp(second.SerialNumber) == 0 {
			t.Fatalf("%s: renew did not replace the certificate", tc.name)
		}
		if d := second.NotAfter.Sub(second.NotBefore); d < 89*24*time.Hour {
			t.Fatalf("%s: lifetime %s, want 90 days", tc.name, d)
		}
		lego("revoke")
		rec, err := c.DB.GetCert(ctx, x509util.SerialHex(second.SerialNumber))
		if err != nil || !rec.Revoked() {
			t.Fatalf("%s: the renewed certificate is not revoked: %+v %v", tc.name, rec, err)
		}
		t.Logf("%s: obtained %s, renewed %s, revoked it", tc.name, x509util.SerialHex(first.SerialNumber), x509util.SerialHex(second.SerialNumber))
	}
}

func freePort(t *testing.T) int {
	l := listen(t)
	p := port(l)
	l.Close()
	return p
}

func readLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := x509util.ReadCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
