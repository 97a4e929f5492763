package main

// End-to-end tests of Nix signing certificates with the real tools: keys from
// nix-store --generate-binary-cache-key, SSH certificates from ssh-keygen and
// ssh-agent, chains judged by openssl, signatures by nix store verify.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/enroll"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
	"nixpki/internal/testutil"
)

// nixTool adapts testutil.Nix to the names gate_e2e_test.go still uses (n.env,
// n.must); the other tests use testutil.Nix directly. Drop it once that file does.
type nixTool struct {
	*testutil.Nix
	t   *testing.T
	env []string
}

func newNixTool(t *testing.T) *nixTool {
	t.Helper()
	n := testutil.NewNix(t)
	return &nixTool{Nix: n, t: t, env: n.Env}
}

func (n *nixTool) must(args ...string) string {
	n.t.Helper()
	return n.Must(args...)
}

// sh runs a command (not Nix) and fails the test if it fails.
func sh(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runEnv runs nixpki with extra environment variables.
func runEnv(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(nixpkiBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

func readChain(t *testing.T, path string) *nixcert.Identity {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := nixcert.ParseChainPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	id, err := nixcert.ParseCertificate(certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// nixInventory is what must not change when a request is refused: the Nix
// certificates in the inventory.
func nixInventory(t *testing.T, dir string) string {
	return run(t, false, "cert", "list", "--dir", dir, "--issuer", "nix", "--revoked", "--json")
}

func lastAttempt(t *testing.T, dir string) map[string]any {
	t.Helper()
	var as []map[string]any
	if err := json.Unmarshal([]byte(run(t, false, "nix", "attempts", "--dir", dir, "--json", "--limit", "1")), &as); err != nil || len(as) != 1 {
		t.Fatalf("nix attempts: %v", err)
	}
	return as[0]
}

func countAttempts(t *testing.T, dir string) int {
	t.Helper()
	var as []map[string]any
	if err := json.Unmarshal([]byte(run(t, false, "nix", "attempts", "--dir", dir, "--json", "--limit", "0")), &as); err != nil {
		t.Fatal(err)
	}
	return len(as)
}

// refusedCLI runs a nixpki command that must fail naming want, change no
// certificate and record the refusal.
func refusedCLI(t *testing.T, dir, want string, recorded bool, args ...string) {
	t.Helper()
	before, attempts := nixInventory(t, dir), countAttempts(t, dir)
	stderr := run(t, true, args...)
	if !strings.Contains(stderr, want) {
		t.Errorf("nixpki %s: stderr %q lacks %q", strings.Join(args[:2], " "), stderr, want)
	}
	if after := nixInventory(t, dir); after != before {
		t.Errorf("nixpki %s: a refused request changed the certificates", strings.Join(args[:2], " "))
	}
	want1 := attempts
	if recorded {
		want1++
	}
	if got := countAttempts(t, dir); got != want1 {
		t.Errorf("nixpki %s: %d attempts recorded, want %d", strings.Join(args[:2], " "), got-attempts, want1-attempts)
	}
	if recorded {
		a := lastAttempt(t, dir)
		if a["outcome"] != "refused" || !strings.Contains(fmt.Sprint(a["reason"]), want) {
			t.Errorf("last attempt %v, want a refusal for %q", a, want)
		}
	}
}

func TestNixCertificatesEndToEnd(t *testing.T) {
	openssl := testutil.NeedTool(t, "openssl")
	sshKeygen := testutil.NeedTool(t, "ssh-keygen")
	n := testutil.NewNix(t)
	tmp := t.TempDir()
	p := func(name string) string { return filepath.Join(tmp, name) }
	dir := p("ca")
	run(t, false, "init", "--dir", dir, "--name", "E2E", "--dns", "ca.internal", "--ip", "127.0.0.1")
	root, inter := filepath.Join(dir, "root.crt"), filepath.Join(dir, "nix-intermediate.crt")

	// The team's SSH user CA and Alice's certificate, made by ssh-keygen.
	sh(t, nil, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "team-user-ca", "-f", p("ssh_ca"))
	sh(t, nil, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "other-ca", "-f", p("other_ca"))
	sh(t, nil, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", p("id_ed25519"))
	sh(t, nil, sshKeygen, "-q", "-s", p("ssh_ca"), "-I", "alice@laptop", "-n", "alice,wheel", "-V", "-5m:+1h", p("id_ed25519.pub"))
	sshCert := func(name, ca, principals, validity string) string {
		sh(t, nil, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-f", p(name))
		sh(t, nil, sshKeygen, "-q", "-s", p(ca), "-I", name, "-n", principals, "-V", validity, p(name+".pub"))
		return p(name)
	}
	unknownCA := sshCert("unknown_ca_key", "other_ca", "alice", "-5m:+1h")
	expired := sshCert("expired_key", "ssh_ca", "alice", "20200101:20200102")
	unmapped := sshCert("unmapped_key", "ssh_ca", "mallory", "-5m:+1h")

	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	caPub, _ := os.ReadFile(p("ssh_ca.pub"))
	cfg.Nix.SSHUserCAs = []string{strings.TrimSpace(string(caPub))}
	cfg.Nix.SSHPrincipals = []config.NixSSHPrincipal{{Principal: "alice", Subject: "alice", Targets: []string{"lab-*"}}}
	data, _ := cfg.Marshal()
	if err := os.WriteFile(filepath.Join(dir, config.FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	httpsAddr, httpAddr := serve(t, dir)
	caURL := "https://" + httpsAddr

	// Keys made by Nix.
	n.Must("nix-store", "--generate-binary-cache-key", "alice-1", p("alice.sec"), p("alice.pub"))
	n.Must("nix-store", "--generate-binary-cache-key", "alice-2", p("alice2.sec"), p("alice2.pub"))
	n.Must("nix-store", "--generate-binary-cache-key", "alice-3", p("alice3.sec"), p("alice3.pub"))
	alicePub, _ := os.ReadFile(p("alice.pub"))

	// Keys made by nixpki are Nix's format: Nix derives the same public key.
	out := run(t, false, "nix", "key", "generate", "--name", "bob-1", "--out-secret", p("bob.sec"), "--out-public", p("bob.pub"))
	bobSec, _ := os.ReadFile(p("bob.sec"))
	bobPub, _ := os.ReadFile(p("bob.pub"))
	if fi, _ := os.Stat(p("bob.sec")); fi.Mode().Perm() != 0o600 || bytes.HasSuffix(bobSec, []byte("\n")) || bytes.HasSuffix(bobPub, []byte("\n")) {
		t.Errorf("bob.sec mode %v; files must have no trailing newline", fi.Mode().Perm())
	}
	cmd := exec.Command("nix", "key", "convert-secret-to-public")
	cmd.Env, cmd.Stdin = n.Env, bytes.NewReader(bobSec)
	if nixPub, err := cmd.Output(); err != nil || strings.TrimSpace(string(nixPub)) != string(bobPub) || strings.TrimSpace(out) != string(bobPub) {
		t.Fatalf("nix key convert-secret-to-public = %q (%v), bob.pub %q, printed %q", nixPub, err, bobPub, out)
	}
	run(t, true, "nix", "key", "generate", "--name", "bob-1", "--out-secret", p("bob.sec"), "--out-public", p("bob2.pub"))

	// Enrollment with a one-time token.
	token := strings.TrimSpace(run(t, false, "nix", "token", "create", "--dir", dir, "--subject", "alice", "--targets", "lab-*", "--scope", "any"))
	if !strings.HasPrefix(token, enroll.TokenPrefix) {
		t.Fatalf("token %q", token)
	}
	enrollArgs := []string{"nix", "enroll", "--ca", caURL, "--root", root}
	out = run(t, false, append(enrollArgs, "--secret", p("alice.sec"), "--token", token, "--out", p("alice.crt"))...)
	if !strings.Contains(out, "for alice") || !strings.Contains(out, "Key alice-1, targets lab-*, scope any") {
		t.Errorf("enroll output:\n%s", out)
	}
	id := readChain(t, p("alice.crt"))
	if id.Key.String() != string(alicePub) {
		t.Fatalf("the certificate certifies %s, alice.pub is %s", id.Key, alicePub)
	}

	// openssl chains it to the root when told to ignore the critical extension it
	// does not know, and refuses it otherwise.
	if o, err := exec.Command(openssl, "verify", "-ignore_critical", "-CAfile", root, "-untrusted", inter, p("alice.crt")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify -ignore_critical: %v\n%s", err, o)
	}
	o, err := exec.Command(openssl, "verify", "-CAfile", root, "-untrusted", inter, p("alice.crt")).CombinedOutput()
	if err == nil || !strings.Contains(string(o), "unhandled critical extension") {
		t.Fatalf("openssl verify without -ignore_critical: %v\n%s", err, o)
	}
	txt, _ := exec.Command(openssl, "x509", "-in", p("alice.crt"), "-noout", "-text", "-certopt", "ext_parse").CombinedOutput()
	for _, want := range []string{"Subject: CN = alice", "ED25519", "1.3.6.1.4.1.99999.1.1", "1.3.6.1.4.1.99999.1.2: critical", ":alice-1", ":lab-*", "CA:FALSE"} {
		if !strings.Contains(string(txt), want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, txt)
		}
	}

	// Enrollment with an SSH certificate: from the key file, then through ssh-agent.
	run(t, false, append(enrollArgs, "--secret", p("alice2.sec"), "--ssh-key", p("id_ed25519"), "--out", p("alice2.crt"))...)
	if id2 := readChain(t, p("alice2.crt")); id2.Constraints.Subject != "alice" || id2.Key.Name != "alice-2" {
		t.Errorf("SSH enrollment certified %+v", id2.Constraints)
	}
	if o, err := exec.Command(openssl, "verify", "-ignore_critical", "-CAfile", root, "-untrusted", inter, p("alice2.crt")).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify (SSH-enrolled): %v\n%s", err, o)
	}
	if agentPath, err := exec.LookPath("ssh-agent"); err == nil {
		sock := p("agent.sock")
		agent := exec.Command(agentPath, "-D", "-a", sock)
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		agentEnv := []string{"SSH_AUTH_SOCK=" + sock}
		sh(t, agentEnv, testutil.NeedTool(t, "ssh-add"), p("id_ed25519"))
		if o, e, err := runEnv(t, agentEnv, append(enrollArgs, "--secret", p("alice3.sec"), "--ssh-agent", "--out", p("alice3.crt"))...); err != nil {
			t.Fatalf("enroll --ssh-agent: %v\n%s%s", err, o, e)
		}
		if id3 := readChain(t, p("alice3.crt")); id3.Key.Name != "alice-3" {
			t.Errorf("agent enrollment certified %+v", id3.Constraints)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("ssh-agent is required in CI (openssh-client)")
	}

	// A signature nixpki makes with the enrolled key over a real store path verifies
	// in nix store verify with the certified key trusted; one Nix makes with the
	// same key verifies with the certificate's key in nixpki.
	nonce := fmt.Sprint(time.Now().UnixNano())
	app := n.Build(fmt.Sprintf(`
let dep = derivation { name = "dep"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                       builder = "/bin/sh"; args = [ "-c" "echo dep %[1]s > $out" ]; };
in derivation { name = "app"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" "echo ${dep} %[1]s > $out" ]; }
`, nonce))
	cache := p("cache")
	n.Must("nix", "copy", "--to", "file://"+cache+"?compression=none", app)
	aliceSec, _ := os.ReadFile(p("alice.sec"))
	sec, err := signing.ParseSecretKey(aliceSec)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if len(files) != 2 {
		t.Fatalf("%d narinfos in the cache, want 2", len(files))
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		ni, err := narinfo.Parse(bytes.NewReader(raw), storepath.DefaultStoreDir)
		if err != nil {
			t.Fatal(err)
		}
		fp, err := ni.Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		if !id.AllowsPath(ni.StorePath, ni.ContentAddressed()) {
			t.Errorf("scope any refuses %s", ni.StorePath)
		}
		ni.Sigs = append(ni.Sigs, sec.Sign(fp))
		text, _ := ni.MarshalText()
		os.WriteFile(f, text, 0o644)
	}
	target := p("target-store")
	trusted := id.Key.String()
	n.Must("nix", "copy", "--from", "file://"+cache, "--to", target, "--option", "trusted-public-keys", trusted, app)
	n.Must("nix", "store", "verify", "--store", target, "-r", "--sigs-needed", "1", "--option", "trusted-public-keys", trusted, app)
	other := signing.PublicKey{Name: "alice-1", Key: readChain(t, p("alice2.crt")).Key.Key}
	if _, e, code := n.Run("nix", "store", "verify", "--store", target, "-r", "--sigs-needed", "1", "--option", "trusted-public-keys", other.String(), app); code == 0 {
		t.Fatalf("nix store verify passed trusting another key:\n%s", e)
	}
	nixSigned := p("cache-nix-signed")
	n.Must("nix", "copy", "--to", "file://"+nixSigned+"?compression=none&secret-key="+p("alice.sec"), app)
	files, _ = filepath.Glob(filepath.Join(nixSigned, "*.narinfo"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		ni, err := narinfo.Parse(bytes.NewReader(raw), storepath.DefaultStoreDir)
		if err != nil {
			t.Fatal(err)
		}
		fp, _ := ni.Fingerprint()
		if len(ni.Sigs) != 1 || !id.Key.Verify(fp, ni.Sigs[0]) {
			t.Errorf("Nix's signature %v of %s does not verify with the certified key", ni.Sigs, ni.StorePath)
		}
	}

	// Renewal by proof of possession of the same key.
	out = run(t, false, "nix", "renew", "--ca", caURL, "--root", root, "--secret", p("alice.sec"), "--cert", p("alice.crt"), "--out", p("alice-renewed.crt"))
	renewed := readChain(t, p("alice-renewed.crt"))
	if renewed.Serial() == id.Serial() || !renewed.Key.Equal(id.Key) {
		t.Errorf("renewal gave %s for %s", renewed.Serial(), renewed.Key)
	}
	refusedCLI(t, dir, "is not the certificate's key", true, "nix", "renew", "--ca", caURL, "--root", root, "--secret", p("alice2.sec"), "--cert", p("alice.crt"), "--out", p("x.crt"))

	// Bad input: a clear error, nothing issued, the attempt recorded.
	refusedCLI(t, dir, "was already used", true, append(enrollArgs, "--secret", p("alice2.sec"), "--token", token, "--out", p("x.crt"))...)
	short := strings.TrimSpace(run(t, false, "nix", "token", "create", "--dir", dir, "--subject", "alice", "--targets", "lab-1", "--ttl", "1s"))
	time.Sleep(1100 * time.Millisecond)
	refusedCLI(t, dir, "expired at", true, append(enrollArgs, "--secret", p("alice2.sec"), "--token", short, "--out", p("x.crt"))...)
	bobs := strings.TrimSpace(run(t, false, "nix", "token", "create", "--dir", dir, "--subject", "bob", "--targets", "lab-1"))
	refusedCLI(t, dir, `the token was issued for another subject, "bob", not "alice"`, true, append(enrollArgs, "--secret", p("alice2.sec"), "--subject", "alice", "--token", bobs, "--out", p("x.crt"))...)
	refusedCLI(t, dir, `key name "alice-2" does not match subject "bob"`, true, append(enrollArgs, "--secret", p("alice2.sec"), "--token", bobs, "--out", p("x.crt"))...)
	refusedCLI(t, dir, "is signed by an unknown CA", true, append(enrollArgs, "--secret", p("alice2.sec"), "--ssh-key", unknownCA, "--out", p("x.crt"))...)
	refusedCLI(t, dir, "expired at 2020-01-0", true, append(enrollArgs, "--secret", p("alice2.sec"), "--ssh-key", expired, "--out", p("x.crt"))...)
	refusedCLI(t, dir, "none of the SSH certificate's principals (mallory) is mapped", true, append(enrollArgs, "--secret", p("alice2.sec"), "--ssh-key", unmapped, "--out", p("x.crt"))...)
	os.WriteFile(p("garbage.pub"), []byte("alice-9:AAAA"), 0o644)
	refusedCLI(t, dir, "malformed Nix public key", true, "nix", "certify", "--dir", dir, "--public", p("garbage.pub"), "--subject", "alice", "--targets", "x", "--out", p("x.crt"))
	refusedCLI(t, dir, `key name "bob-1" does not match subject "alice"`, true, "nix", "certify", "--dir", dir, "--public", p("bob.pub"), "--subject", "alice", "--targets", "x", "--out", p("x.crt"))
	// A malformed secret key never leaves the member's machine: refused locally.
	os.WriteFile(p("garbage.sec"), []byte("alice-9:not a key"), 0o600)
	refusedCLI(t, dir, "malformed Nix secret key", false, append(enrollArgs, "--secret", p("garbage.sec"), "--token", bobs, "--out", p("x.crt"))...)
	if _, err := os.Stat(p("x.crt")); err == nil {
		t.Error("a refused request wrote x.crt")
	}
	// bob's token survived the refusals.
	run(t, false, append(enrollArgs, "--secret", p("bob.sec"), "--token", bobs, "--out", p("bob.crt"))...)

	// Offline certification by the admin.
	out = run(t, false, "nix", "certify", "--dir", dir, "--public", p("bob.pub"), "--subject", "bob", "--targets", "build1,lab-*", "--scope", "content-addressed", "--valid", "24h", "--out", p("bob-offline.crt"))
	if bo := readChain(t, p("bob-offline.crt")); !bo.Constraints.Scope.ContentAddressedOnly || bo.Cert.NotAfter.Sub(bo.Cert.NotBefore) > 24*time.Hour+2*time.Minute {
		t.Errorf("offline certificate %+v, %s", bo.Constraints, out)
	}

	// Revocation, and the CRL carried to offline machines.
	// Key compromise reaches every certificate for the key: the renewal too.
	out = run(t, false, "nix", "revoke", "--dir", dir, strings.ToUpper(id.Serial()), "--reason", "keyCompromise")
	if c := strings.Count(out, "Revoked "); c != 2 || !strings.Contains(out, strings.ToUpper(renewed.Serial())) {
		t.Errorf("revoking alice.crt for key compromise revoked %d certificates, want it and its renewal %s:\n%s", c, renewed.Serial(), out)
	}
	crl := p("nix.crl")
	run(t, false, "nix", "crl", "--dir", dir, "--out", crl)
	crlText, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", crl, "-noout", "-text").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToUpper(string(crlText)), strings.ToUpper(id.Serial())) || !strings.Contains(string(crlText), "Key Compromise") {
		t.Fatalf("openssl crl -text lacks the revoked %s: %v\n%s", id.Serial(), err, crlText)
	}
	if o, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", crl, "-CAfile", inter, "-noout").CombinedOutput(); err != nil || !strings.Contains(string(o), "verify OK") {
		t.Fatalf("the CRL's signature does not verify with the Nix intermediate: %v\n%s", err, o)
	}
	crlPEM := p("nix.crl.pem")
	sh(t, nil, openssl, "crl", "-inform", "DER", "-in", crl, "-out", crlPEM)
	o, err = exec.Command(openssl, "verify", "-ignore_critical", "-crl_check", "-CRLfile", crlPEM, "-CAfile", root, "-untrusted", inter, p("alice.crt")).CombinedOutput()
	if err == nil || !strings.Contains(string(o), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check of the revoked certificate: %v\n%s", err, o)
	}
	// The server serves the same CRL.
	served := p("served.crl")
	fetch(t, "http://"+httpAddr+"/crl/nix.crl", served)
	servedText, _ := exec.Command(openssl, "crl", "-inform", "DER", "-in", served, "-noout", "-text").CombinedOutput()
	if !strings.Contains(strings.ToUpper(string(servedText)), strings.ToUpper(id.Serial())) {
		t.Errorf("the served Nix CRL lacks %s", id.Serial())
	}
	// A revoked certificate is not renewed.
	refusedCLI(t, dir, "revoked", true, "nix", "renew", "--ca", caURL, "--root", root, "--secret", p("alice.sec"), "--cert", p("alice.crt"), "--out", p("x.crt"))

	// Revoking by subject revokes the rest of Alice's certificates.
	out = run(t, false, "nix", "revoke", "--dir", dir, "--subject", "alice")
	if c := strings.Count(out, "Revoked "); c != 2 {
		t.Errorf("revoke --subject alice revoked %d certificates:\n%s", c, out)
	}
	run(t, false, "nix", "crl", "--dir", dir, "--out", crl)
	crlText, _ = exec.Command(openssl, "crl", "-inform", "DER", "-in", crl, "-noout", "-text").CombinedOutput()
	for _, f := range []string{"alice2.crt", "alice-renewed.crt"} {
		if s := readChain(t, p(f)).Serial(); !strings.Contains(strings.ToUpper(string(crlText)), strings.ToUpper(s)) {
			t.Errorf("the CRL lacks %s (%s)", s, f)
		}
	}
	if s := readChain(t, p("bob.crt")).Serial(); strings.Contains(strings.ToUpper(string(crlText)), strings.ToUpper(s)) {
		t.Error("bob's certificate was revoked with alice's")
	}
	if e := run(t, true, "nix", "revoke", "--dir", dir, "--subject", "alice"); !strings.Contains(e, "no unrevoked") {
		t.Errorf("second revoke --subject: %s", e)
	}
	if tl := run(t, false, "nix", "token", "list", "--dir", dir); !strings.Contains(tl, "used ") || !strings.Contains(tl, "expired") {
		t.Errorf("token list:\n%s", tl)
	}
}
