package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// nixpkiBin builds the command once per test run.
func nixpkiBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nixpki-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nixpki")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// run runs nixpki with args and returns stdout; it fails the test on error unless
// wantErr, in which case it returns stderr.
func run(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(nixpkiBin(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if wantErr {
		if err == nil {
			t.Fatalf("nixpki %s succeeded, want failure; stdout:\n%s", strings.Join(args, " "), stdout.String())
		}
		return stderr.String()
	}
	if err != nil {
		t.Fatalf("nixpki %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func openssl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testutil.NeedTool(t, "openssl"), args...).CombinedOutput()
	return string(out), err
}

// serve starts `nixpki serve` and waits until it prints its addresses.
func serve(t *testing.T, dir string, extra ...string) (httpsAddr, httpAddr string) {
	t.Helper()
	httpAddr = testutil.FreePort(t)
	return serveOn(t, dir, testutil.FreePort(t), httpAddr, extra...), httpAddr
}

// serveOn starts `nixpki serve` on the given addresses; it is stopped (SIGINT) and
// waited for when the test ends.
func serveOn(t *testing.T, dir, httpsAddr, httpAddr string, extra ...string) string {
	t.Helper()
	serveBanner(t, dir, httpsAddr, httpAddr, extra...)
	return httpsAddr
}

// serveBanner is serveOn returning what serve printed up to its NixOS snippet.
func serveBanner(t *testing.T, dir, httpsAddr, httpAddr string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"serve", "--dir", dir, "--listen", httpsAddr, "--http-listen", httpAddr}, extra...)
	cmd := exec.CommandContext(ctx, nixpkiBin(t), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if sc.Text() == "'' ];" {
				ready <- all.String()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case out := <-ready:
		if !strings.Contains(out, "Root SHA-256 fingerprint:") || !strings.Contains(out, "security.pki.certificates") {
			t.Fatalf("serve output lacks the fingerprint or the NixOS snippet:\n%s", out)
		}
		return out
	case <-time.After(30 * time.Second):
		t.Fatal("nixpki serve did not start within 30s")
	}
	return ""
}

func fetch(t *testing.T, url, out string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	os.WriteFile(out, b, 0o644)
}

// TestCLIEndToEnd runs the built binary through init → serve → cert issue → revoke
// and judges every artefact with openssl, as a user would.
func TestCLIEndToEnd(t *testing.T) {
	testutil.NeedTool(t, "openssl")
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	httpAddr := testutil.FreePort(t)
	out := run(t, false, "init", "--dir", dir, "--name", "E2E", "--dns", "ca.internal", "--ip", "127.0.0.1",
		"--permitted-dns", "internal", "--permitted-ip", "127.0.0.0/8,100.64.0.0/10", "--external-url", "http://"+httpAddr)
	if !strings.Contains(out, "Root SHA-256 fingerprint:") || !strings.Contains(out, "secrets/password") {
		t.Fatalf("init output:\n%s", out)
	}
	root := filepath.Join(dir, "root.crt")
	inter := filepath.Join(dir, "tls-intermediate.crt")
	fp, _ := openssl(t, "x509", "-in", root, "-noout", "-fingerprint", "-sha256")
	if !strings.Contains(out, strings.TrimSpace(strings.SplitN(fp, "=", 2)[1])) {
		t.Fatalf("init printed a fingerprint that openssl disagrees with (%s):\n%s", fp, out)
	}
	// The keys are encrypted PKCS#8 that openssl reads with the password.
	if o, err := openssl(t, "pkey", "-in", filepath.Join(dir, "secrets/tls-intermediate.key"), "-passin", "file:"+filepath.Join(dir, "secrets/password"), "-noout"); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, o)
	}
	if o, err := openssl(t, "pkey", "-in", filepath.Join(dir, "secrets/tls-intermediate.key"), "-passin", "pass:wrong", "-noout"); err == nil {
		t.Fatalf("openssl read the key with a wrong password:\n%s", o)
	}
	run(t, true, "init", "--dir", dir) // refuses to overwrite

	// serve on ports the test picked, plain HTTP on the external URL's port.
	httpsAddr := serveOn(t, dir, testutil.FreePort(t), httpAddr)

	// The HTTPS side presents a certificate from the TLS intermediate for ca.internal.
	pool := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(root)
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "ca.internal", MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + httpsAddr + "/roots.pem")
	if err != nil {
		t.Fatalf("HTTPS with the CA's own certificate: %v", err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(served) != string(rootPEM) {
		t.Fatal("/roots.pem differs from root.crt")
	}
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "ca.internal", MaxVersion: tls.VersionTLS11}}}).Get("https://" + httpsAddr + "/health"); err == nil {
		t.Fatal("server accepted TLS 1.1")
	}

	// Direct issuance while serve runs on the same directory.
	leaf := filepath.Join(tmp, "web.crt")
	run(t, false, "cert", "issue", "--dir", dir, "--san", "web.internal,100.64.0.3", "--out-cert", leaf, "--out-key", filepath.Join(tmp, "web.key"))
	if fi, _ := os.Stat(filepath.Join(tmp, "web.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("leaf key mode %v", fi.Mode().Perm())
	}
	if o, err := openssl(t, "verify", "-CAfile", root, "-untrusted", inter, leaf); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, o)
	}
	// The file holds leaf then intermediate (full chain).
	chain, _ := os.ReadFile(leaf)
	if strings.Count(string(chain), "BEGIN CERTIFICATE") != 2 {
		t.Fatalf("certificate file holds %d certificates, want leaf + intermediate", strings.Count(string(chain), "BEGIN CERTIFICATE"))
	}
	txt, _ := openssl(t, "x509", "-in", leaf, "-noout", "-text")
	for _, want := range []string{"DNS:web.internal", "IP Address:100.64.0.3", "URI:http://" + httpAddr + "/crl/tls.crl", "OCSP - URI:http://" + httpAddr + "/ocsp", "CA Issuers - URI:http://" + httpAddr + "/certs/tls.crt"} {
		if !strings.Contains(txt, want) {
			t.Errorf("leaf lacks %q", want)
		}
	}
	serialOut, _ := openssl(t, "x509", "-in", leaf, "-noout", "-serial")
	serial := strings.TrimSpace(strings.TrimPrefix(serialOut, "serial="))

	crlCheck := func() (string, error) {
		der := filepath.Join(tmp, "tls.crl")
		fetch(t, "http://"+httpAddr+"/crl/tls.crl", der)
		pemCRL := der + ".pem"
		if o, err := openssl(t, "crl", "-inform", "DER", "-in", der, "-out", pemCRL); err != nil {
			t.Fatalf("openssl crl: %v\n%s", err, o)
		}
		return openssl(t, "verify", "-crl_check", "-CRLfile", pemCRL, "-CAfile", root, "-untrusted", inter, leaf)
	}
	ocspStatus := func() string {
		o, err := openssl(t, "ocsp", "-issuer", inter, "-cert", leaf, "-url", "http://"+httpAddr+"/ocsp", "-CAfile", root)
		if err != nil || !strings.Contains(o, "Response verify OK") {
			t.Fatalf("openssl ocsp: %v\n%s", err, o)
		}
		return o
	}
	if o, err := crlCheck(); err != nil {
		t.Fatalf("crl_check on a good leaf: %v\n%s", err, o)
	}
	if o := ocspStatus(); !strings.Contains(o, leaf+": good") {
		t.Fatalf("OCSP before revocation:\n%s", o)
	}

	// List and show, with the serial in other spellings.
	var listed []map[string]any
	if err := json.Unmarshal([]byte(run(t, false, "cert", "list", "--dir", dir, "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range listed {
		found = found || c["serial"] == serial
	}
	if !found {
		t.Fatalf("cert list --json lacks %s", serial)
	}
	if !strings.Contains(run(t, false, "cert", "list", "--dir", dir, "--expiring", "9000h"), serial) {
		t.Error("cert list --expiring 9000h lacks the one-year leaf")
	}
	if strings.Contains(run(t, false, "cert", "list", "--dir", dir, "--expiring", "720h"), serial) {
		t.Error("cert list --expiring 720h lists the one-year leaf")
	}
	colons := strings.ToLower(serial[:2]) + ":" + strings.ToLower(serial[2:])
	if !strings.Contains(run(t, false, "cert", "show", "--dir", dir, colons), `"web.internal"`) {
		t.Error("cert show with a lowercase, colon serial failed")
	}
	if e := run(t, true, "cert", "show", "--dir", dir, "DEADBEEF"); !strings.Contains(e, "no certificate with serial DEADBEEF") {
		t.Errorf("unknown serial: %s", e)
	}

	run(t, false, "cert", "revoke", "--dir", dir, serial, "--reason", "keyCompromise")
	if o := ocspStatus(); !strings.Contains(o, leaf+": revoked") || !strings.Contains(o, "keyCompromise") {
		t.Fatalf("OCSP after revocation:\n%s", o)
	}
	if o, err := crlCheck(); err == nil || !strings.Contains(o, "certificate revoked") {
		t.Fatalf("crl_check passed for a revoked leaf: %v\n%s", err, o)
	}

	// Bad input: each names the problem, and nothing is recorded.
	before := run(t, false, "cert", "list", "--dir", dir, "--json", "--revoked")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--san", "web.internal,999.1.1.1"}, `"999.1.1.1" is neither a valid IP address nor a DNS name`},
		{[]string{"--san", "bad name.internal"}, "not allowed in a DNS name"},
		{[]string{"--san", "example.com"}, "example.com is outside the CA's name constraints"},
		{[]string{"--san", "*.web.internal"}, "wildcard"},
		{[]string{"--san", "a.internal", "--valid", "100000h"}, "exceeds policy.max_validity"},
	} {
		args := append([]string{"cert", "issue", "--dir", dir, "--out-cert", filepath.Join(tmp, "x.crt"), "--out-key", filepath.Join(tmp, "x.key")}, tc.args...)
		if e := run(t, true, args...); !strings.Contains(e, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, e, tc.want)
		}
	}
	wrongPW := filepath.Join(tmp, "wrong")
	os.WriteFile(wrongPW, []byte("nope"), 0o600)
	if e := run(t, true, "cert", "issue", "--dir", dir, "--password-file", wrongPW, "--san", "a.internal", "--out-cert", filepath.Join(tmp, "y.crt"), "--out-key", filepath.Join(tmp, "y.key")); !strings.Contains(e, "wrong password") {
		t.Errorf("wrong password: %s", e)
	}
	if after := run(t, false, "cert", "list", "--dir", dir, "--json", "--revoked"); after != before {
		t.Error("refused requests changed the inventory")
	}
	for _, f := range []string{"x.crt", "x.key", "y.crt", "y.key"} {
		if _, err := os.Stat(filepath.Join(tmp, f)); err == nil {
			t.Errorf("refused request wrote %s", f)
		}
	}

	// A CSR made by openssl is certified with the CSR's names.
	csrKey, csr := filepath.Join(tmp, "csr.key"), filepath.Join(tmp, "req.csr")
	if o, err := openssl(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", csrKey, "-out", csr, "-subj", "/CN=api.internal", "-addext", "subjectAltName=DNS:api.internal,IP:100.64.0.9"); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, o)
	}
	csrCert := filepath.Join(tmp, "api.crt")
	wantIn(t, "cert issue --csr with --out-key", run(t, true, "cert", "issue", "--dir", dir, "--csr", csr, "--out-cert", csrCert, "--out-key", csrCert+".key"),
		"leave out --out-key and --key-type")
	run(t, false, "cert", "issue", "--dir", dir, "--csr", csr, "--out-cert", csrCert, "--valid", "720h")
	if o, err := openssl(t, "verify", "-CAfile", root, "-untrusted", inter, csrCert); err != nil {
		t.Fatalf("CSR cert: %v\n%s", err, o)
	}
	if txt, _ := openssl(t, "x509", "-in", csrCert, "-noout", "-text"); !strings.Contains(txt, "DNS:api.internal, IP Address:100.64.0.9") {
		t.Errorf("CSR names not carried over:\n%s", txt)
	}

	// Trust distribution.
	if s := run(t, false, "nixos", "trust", "--dir", dir); !strings.Contains(s, "security.pki.certificates = [ ''") || !strings.Contains(s, strings.TrimSpace(string(rootPEM))) {
		t.Errorf("nixos trust:\n%s", s)
	}
	bundle := filepath.Join(tmp, "ca-bundle.crt")
	run(t, false, "trust", "bundle", "--dir", dir, "--out", bundle)
	if o, err := openssl(t, "verify", "-CAfile", bundle, "-untrusted", inter, csrCert); err != nil {
		t.Fatalf("bundle does not verify a leaf: %v\n%s", err, o)
	}
}

func TestKeyPermissionsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	run(t, false, "init", "--dir", dir)
	key := filepath.Join(dir, "secrets", "tls-intermediate.key")
	os.Chmod(key, 0o640)
	e := run(t, true, "serve", "--dir", dir, "--listen", testutil.FreePort(t), "--http-listen", testutil.FreePort(t))
	if !strings.Contains(e, key) || !strings.Contains(e, "chmod 600 "+key) {
		t.Fatalf("serve with a 0640 key: %s", e)
	}
}

func TestServeInitialisesOnFirstRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	httpAddr := testutil.FreePort(t)
	banner := serveBanner(t, dir, testutil.FreePort(t), httpAddr)
	// The first start says what is exposed: loopback only, and an ACME provisioner
	// open to anyone who reaches it, with the settings that restrict it.
	wantIn(t, "first-start banner", banner, "listening on loopback only", "--listen",
		`ACME provisioner "acme" issues to anyone who can reach it`, "require_eab", "allowed_dns",
		"only this machine can fetch them", "--dns ca.example.internal")
	resp, err := http.Get("http://" + httpAddr + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "root.crt")); err != nil {
		t.Fatal(err)
	}
	// Flags that only init uses are refused on an initialised directory, naming the
	// recorded value, instead of being ignored.
	wantIn(t, "serve --name on an initialised directory", run(t, true, "serve", "--dir", dir, "--name", "other"),
		`--name "other"`, `initialised with "nixpki"`)
	wantIn(t, "serve --key-type on an initialised directory", run(t, true, "serve", "--dir", dir, "--key-type", "ed25519"),
		`--key-type "ed25519"`, `initialised with "p256"`)
}
