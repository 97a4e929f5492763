package main

// End-to-end tests of the gate with real Nix: closures built with nix-build, pushed
// with nixpki nix push (nix copy to the gate over HTTP on loopback), and copied into
// a separate target store that trusts only the gate's key.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/gate"
	"nixpki/internal/keys"
	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// gateRig is a CA, a running gate and the helpers to drive Nix against them.
type gateRig struct {
	t          *testing.T
	n          *nixTool
	tmp        string
	caDir      string
	gateDir    string
	url        string
	gatePub    string
	role       int
	builtSeq   int
	lastTarget string
}

func (r *gateRig) p(name string) string { return filepath.Join(r.tmp, name) }

// env returns Nix's environment with a narinfo cache of its own: every role (a
// member's laptop, a target) is another machine.
func (r *gateRig) env() []string {
	r.role++
	var env []string
	for _, kv := range r.n.env {
		if !strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			env = append(env, kv)
		}
	}
	return append(env, "XDG_CACHE_HOME="+r.p(fmt.Sprintf("cache-%d", r.role)))
}

func (r *gateRig) exec(env []string, name string, args ...string) (string, string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env, cmd.Dir = env, r.tmp
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// build makes a fresh input-addressed closure: a dependency and a top path called
// name that references it.
func (r *gateRig) build(name string) (top, dep string) {
	r.t.Helper()
	return r.buildWith(name, "echo ${dep} %[1]s > $out")
}

// buildWith is build with the top path's builder script (a format taking the nonce
// as %[1]s; it must refer to ${dep}).
func (r *gateRig) buildWith(name, script string) (top, dep string) {
	r.t.Helper()
	r.builtSeq++
	nonce := fmt.Sprintf("%d-%d", time.Now().UnixNano(), r.builtSeq)
	expr := r.p(fmt.Sprintf("expr-%d.nix", r.builtSeq))
	os.WriteFile(expr, []byte(fmt.Sprintf(`
let dep = derivation { name = "dep%[3]d"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                       builder = "/bin/sh"; args = [ "-c" "echo dep %[1]s > $out" ]; };
in derivation { name = "%[2]s"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" "%[4]s" ]; }
`, nonce, name, r.builtSeq, fmt.Sprintf(script, nonce))), 0o644)
	top = strings.TrimSpace(r.n.must("nix-build", "--no-out-link", expr))
	refs := strings.Fields(r.n.must("nix-store", "-q", "--references", top))
	if len(refs) != 1 {
		r.t.Fatalf("%s references %v", top, refs)
	}
	return top, refs[0]
}

// push runs nixpki nix push as a member.
func (r *gateRig) push(member string, extra []string, paths ...string) (string, error) {
	args := append([]string{"nix", "push", "--gate", r.url, "--cert", r.p(member + ".crt"), "--secret", r.p(member + ".sec"), "--no-fetch-crl"}, extra...)
	cmd := exec.Command(nixpkiBin(r.t), append(args, paths...)...)
	cmd.Env = r.env()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	cmd.Stdout = &errOut
	err := cmd.Run()
	return errOut.String(), err
}

// rawCopy signs and uploads with plain nix copy, as anyone could.
func (r *gateRig) rawCopy(member string, paths ...string) (string, error) {
	_, e, err := r.exec(r.env(), "nix", append([]string{"copy", "--to", r.url + "?compression=zstd&secret-key=" + r.p(member+".sec")}, paths...)...)
	return e, err
}

// target copies paths from the gate into a fresh store that trusts only the gate.
func (r *gateRig) target(paths ...string) (string, error) {
	store := r.p(fmt.Sprintf("target-%d", r.role+1))
	r.lastTarget = store
	_, e, err := r.exec(r.env(), "nix", append([]string{"copy", "--from", r.url, "--to", store, "--option", "trusted-public-keys", r.gatePub}, paths...)...)
	if err == nil {
		if _, e2, err := r.exec(r.env(), "nix", append([]string{"store", "verify", "--store", store, "-r", "--sigs-needed", "1", "--option", "trusted-public-keys", r.gatePub}, paths...)...); err != nil {
			r.t.Fatalf("nix store verify in the target after a successful copy: %v\n%s", err, e2)
		}
	}
	return e, err
}

func (r *gateRig) mustTarget(paths ...string) {
	r.t.Helper()
	if e, err := r.target(paths...); err != nil {
		r.t.Fatalf("target copy of %v failed: %v\n%s", paths, err, e)
	}
}

func (r *gateRig) mustNotTarget(paths ...string) {
	r.t.Helper()
	if e, err := r.target(paths...); err == nil {
		r.t.Fatalf("target copy of %v succeeded, want failure", paths)
	} else if !strings.Contains(e, "does not exist in binary cache") && !strings.Contains(e, "is not valid") && !strings.Contains(e, "lacks a valid signature") {
		r.t.Logf("target copy failed with: %s", e)
	}
}

func (r *gateRig) narinfoStatus(path string) int {
	status, _ := r.narinfo(path)
	return status
}

// narinfo GETs path's narinfo from the gate: its status and body.
func (r *gateRig) narinfo(path string) (int, string) {
	r.t.Helper()
	res, err := http.Get(r.url + "/" + storepath.HashPart(path) + ".narinfo")
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// narFileSize is the size of the NAR file the gate serves for path.
func (r *gateRig) narFileSize(path string) int {
	r.t.Helper()
	_, ni := r.narinfo(path)
	u := ""
	for _, line := range strings.Split(ni, "\n") {
		if v, ok := strings.CutPrefix(line, "URL: "); ok {
			u = v
		}
	}
	if u == "" {
		r.t.Fatalf("no URL in the narinfo of %s:\n%s", path, ni)
	}
	res, err := http.Get(r.url + "/" + u)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		r.t.Fatalf("GET %s: %s, %v", u, res.Status, err)
	}
	return int(n)
}

func (r *gateRig) put(urlPath string, body []byte) (int, string) {
	req, _ := http.NewRequest(http.MethodPut, r.url+urlPath, bytes.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func wantIn(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q lacks %q", what, got, w)
		}
	}
}

// startGate runs `nixpki gate serve` until the test ends.
func startGate(t *testing.T, dir, listen string, env ...string) string {
	t.Helper()
	return startGateArgs(t, []string{"--dir", dir, "--listen", listen}, env...)
}

// startGateArgs runs `nixpki gate serve ARGS` until the test ends.
func startGateArgs(t *testing.T, args []string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, nixpkiBin(t), append([]string{"gate", "serve"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "serving on") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case line := <-ready:
		return line
	case <-time.After(30 * time.Second):
		t.Fatal("nixpki gate serve did not start within 30s")
	}
	return ""
}

// certifyExpired signs a Nix certificate that expired an hour ago, with the CA's Nix
// intermediate (the CLI refuses validities under a minute, rightly).
func certifyExpired(t *testing.T, caDir, pubFile, out string) {
	t.Helper()
	password, err := keys.ReadPassword(filepath.Join(caDir, "secrets", "password"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadSigner(filepath.Join(caDir, "secrets", "nix-intermediate.key"), password)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509util.ReadCertFile(filepath.Join(caDir, "nix-intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(pubFile)
	pub, err := signing.ParsePublicKey(data)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := nixcert.Template(nixcert.Constraints{KeyName: pub.Name, Subject: "eve", Targets: []string{"host-a"}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, _ = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, pub.Key, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	os.WriteFile(out, x509util.ChainPEM(leaf, inter), 0o644)
}

// editGateConfig changes the config.json of a gate that is not running yet.
func editGateConfig(t *testing.T, dir string, edit func(*gate.Config)) {
	t.Helper()
	cfg, err := gate.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(&cfg)
	data, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newGateRig(t *testing.T) *gateRig { return newGateRigWith(t, nil, nil) }

// newGateRigWith is newGateRig with extra `nixpki init` arguments, a change to the
// gate's configuration and extra `gate serve` flags. The gate fetches no CRLs unless
// the change asks it to: the certificates name a CA that is not running.
func newGateRigWith(t *testing.T, initArgs []string, gateCfg func(*gate.Config), serveArgs ...string) *gateRig {
	n := newNixTool(t)
	r := &gateRig{t: t, n: n, tmp: t.TempDir()}
	r.caDir, r.gateDir = r.p("ca"), r.p("gate")
	if initArgs == nil {
		initArgs = []string{"--dns", "ca.internal", "--ip", "127.0.0.1"}
	}
	run(t, false, append([]string{"init", "--dir", r.caDir, "--name", "GateE2E"}, initArgs...)...)
	certify := func(member, subject, targets, scope string) {
		n.must("nix-store", "--generate-binary-cache-key", member, r.p(member+".sec"), r.p(member+".pub"))
		if subject != "" {
			run(t, false, "nix", "certify", "--dir", r.caDir, "--public", r.p(member+".pub"), "--subject", subject, "--targets", targets, "--scope", scope, "--out", r.p(member+".crt"))
		}
	}
	certify("alice-1", "alice", "host-a", "any")
	certify("alice-2", "alice", "host-a", "any")
	certify("bob-1", "bob", "host-*", "any")
	certify("carol-1", "carol", "host-b", "any")
	certify("dave-1", "dave", "host-a", "content-addressed")
	certify("mallory-1", "", "", "")
	certify("eve-1", "", "", "")
	certifyExpired(t, r.caDir, r.p("eve-1.pub"), r.p("eve-1.crt"))
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix.crl"))

	out := run(t, false, "gate", "init", "--dir", r.gateDir, "--name", "host-a", "--root", filepath.Join(r.caDir, "root.crt"))
	wantIn(t, "gate init", out, "substituters", "trusted-public-keys", "host-a-gate-1:")
	pub, err := os.ReadFile(filepath.Join(r.gateDir, "gate.pub"))
	if err != nil {
		t.Fatal(err)
	}
	r.gatePub = string(pub)
	editGateConfig(t, r.gateDir, func(c *gate.Config) {
		c.Thresholds = []gate.Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}}
		c.CRLFetchInterval = 0
		if gateCfg != nil {
			gateCfg(c)
		}
	})
	addr := testutil.FreePort(t)
	startGateArgs(t, append([]string{"--dir", r.gateDir, "--listen", addr}, serveArgs...))
	r.url = "http://" + addr
	return r
}

func TestGateEndToEnd(t *testing.T) {
	r := newGateRig(t)
	crl := []string{"--crl", r.p("nix.crl")}

	// A certified member pushes a closure; a target trusting only the gate copies it.
	app, _ := r.build("app")
	if out, err := r.push("alice-1", crl, app); err != nil {
		t.Fatalf("alice's push: %v\n%s", err, out)
	} else {
		wantIn(t, "alice's push", out, "may sign for gate host-a", "2 of 2 paths admitted")
	}
	r.mustTarget(app)
	sigs, _, _ := r.exec(r.env(), "nix", "path-info", "--sigs", "--store", r.lastTarget, app)
	wantIn(t, "signatures in the target", sigs, "alice-1:", "host-a-gate-1:")

	// Every compression Nix writes.
	for _, c := range []string{"xz", "bzip2", "none"} {
		top, _ := r.build("comp-" + c)
		if out, err := r.push("alice-1", []string{"--compression", c}, top); err != nil {
			t.Fatalf("push with %s: %v\n%s", c, err, out)
		}
		r.mustTarget(top)
	}
	// A chosen zstd level reaches the gate (the same text is stored smaller at 19 than
	// at 1) and the target; levels that are not zstd's, or not for zstd, are refused.
	text := r.p("text")
	os.WriteFile(text, testutil.GoSource(t, 1<<20), 0o644)
	var stored [2]int
	for i, level := range []string{"1", "19"} {
		top, _ := r.buildWith("level-"+level, "cat "+text+" > $out; echo ${dep} %[1]s >> $out")
		out, err := r.push("alice-1", []string{"--compression", "zstd", "--compression-level", level}, top)
		if err != nil {
			t.Fatalf("push with --compression-level %s: %v\n%s", level, err, out)
		}
		wantIn(t, "push with --compression-level "+level, out, "zstd level "+level)
		stored[i] = r.narFileSize(top)
		r.mustTarget(top)
	}
	if stored[1] >= stored[0]*95/100 {
		t.Errorf("the gate stores the text in %d bytes at level 1 and %d at level 19: the level was not used", stored[0], stored[1])
	}
	top, _ := r.build("level-bad")
	for _, bad := range [][]string{{"--compression-level", "23"}, {"--compression", "xz", "--compression-level", "5"}} {
		out, err := r.push("alice-1", bad, top)
		if err == nil {
			t.Fatalf("push %v succeeded", bad)
		}
		wantIn(t, fmt.Sprintf("push %v", bad), out, "--compression-level")
	}
	// Incompressible data: auto sends it uncompressed, zstd as a frame of raw
	// blocks; the target's Nix substitutes both.
	for _, c := range []string{"auto", "zstd"} {
		top, _ := r.buildWith("random-"+c, "mkdir $out; echo ${dep} %[1]s > $out/ref; head -c 300000 /dev/urandom > $out/blob")
		out, err := r.push("alice-1", []string{"--compression", c}, top)
		if err != nil {
			t.Fatalf("push of random data with %s: %v\n%s", c, err, out)
		}
		_, ni := r.narinfo(top)
		want := map[string]string{"auto": "Compression: none", "zstd": "Compression: zstd"}[c]
		wantIn(t, "narinfo of random data pushed with "+c, ni, want)
		r.mustTarget(top)
	}

	// An uncertified key.
	top, _ = r.build("uncertified")
	out, err := r.rawCopy("mallory-1", top)
	if err == nil {
		t.Fatal("nix copy signed by an uncertified key succeeded")
	}
	wantIn(t, "uncertified key", out, "rejected /nix/store/", "key mallory-1: unknown key")
	r.mustNotTarget(top)

	// An expired certificate: nixpki nix push stops at the certificate; plain nix copy
	// is rejected path by path.
	top, _ = r.build("expired")
	out, err = r.push("eve-1", nil, top)
	if err == nil {
		t.Fatal("push with an expired certificate succeeded")
	}
	wantIn(t, "expired certificate (push)", out, "refuses the certificate", "expired at")
	out, err = r.rawCopy("eve-1", top)
	if err == nil {
		t.Fatal("nix copy with an expired certificate succeeded")
	}
	wantIn(t, "expired certificate", out, "rejected /nix/store/", "key eve-1", "expired")
	r.mustNotTarget(top)

	// A certificate whose targets exclude the gate.
	top, _ = r.build("wrong-target")
	out, err = r.push("carol-1", nil, top)
	if err == nil {
		t.Fatal("push with a certificate for another gate succeeded")
	}
	wantIn(t, "targets (push)", out, `its targets (host-b) do not include this gate "host-a"`)
	out, err = r.rawCopy("carol-1", top)
	if err == nil {
		t.Fatal("nix copy with a certificate for another gate succeeded")
	}
	wantIn(t, "targets", out, "rejected /nix/store/", "key carol-1", "do not include this gate")
	r.mustNotTarget(top)

	// A content-addressed-only certificate signing an input-addressed path.
	top, _ = r.build("ca-only")
	out, err = r.push("dave-1", nil, top)
	if err == nil {
		t.Fatal("push of input-addressed paths with a content-addressed-only certificate succeeded")
	}
	wantIn(t, "scope", out, "rejected /nix/store/", "key dave-1", `scope "content-addressed" does not allow an input-addressed path`)
	r.mustNotTarget(top)

	// A tampered NAR: the narinfo (signed by alice) says one NarHash, the NAR uploaded
	// under a correct file name holds other bytes.
	_, tdep := r.build("tampered")
	tamperedNAR(t, r, tdep)
	r.mustNotTarget(tdep)

	// One signature where a protected name needs two: pending, then admitted when a
	// second identity pushes; the same identity's second key does not count.
	sudo, sudoDep := r.build("fake-sudo-1.0")
	out, err = r.push("alice-1", nil, sudo)
	if err == nil {
		t.Fatal("a *-sudo-* path was admitted on one signature")
	}
	wantIn(t, "threshold", out, "pending "+sudo, "has 1 of 2 signatures from distinct certified identities (pattern *-sudo-* needs 2)", "1 of 2 paths admitted")
	if r.narinfoStatus(sudoDep) != 200 || r.narinfoStatus(sudo) != 404 {
		t.Errorf("after one signature: dep %d, sudo %d; want 200, 404", r.narinfoStatus(sudoDep), r.narinfoStatus(sudo))
	}
	r.mustNotTarget(sudo)
	pending := run(t, false, "gate", "pending", "--dir", r.gateDir)
	wantIn(t, "gate pending", pending, sudo, "1 of 2 (alice)")
	out, err = r.push("alice-2", []string{"--via-nix-copy"}, sudo)
	if err == nil {
		t.Fatal("a second key of the same subject completed a two-identity threshold")
	}
	wantIn(t, "same subject", out, "has 1 of 2 signatures", "signed again 1 path the gate served already")
	// The threshold covers the closure: bob signing only the top path (plain nix copy
	// skips the dependency the gate serves) leaves it pending, waiting for the
	// dependency alice alone signed.
	if status, body := r.put("/nixpki/certs", mustRead(t, r.p("bob-1.crt"))); status != 200 {
		t.Fatalf("bob's certificate: %d %s", status, body)
	}
	out, err = r.rawCopy("bob-1", sudo)
	if err == nil {
		t.Fatal("a *-sudo-* path was admitted over a dependency signed by one identity")
	}
	wantIn(t, "threshold over the closure", out, "pending "+sudo, "waiting for its references "+filepath.Base(sudoDep)+" (admitted with 1 of the 2")
	if r.narinfoStatus(sudo) != 404 {
		t.Error("sudo served over a dependency with one signer")
	}
	// bob's nixpki nix push signs the whole closure again, dependency included.
	if out, err := r.push("bob-1", crl, sudo); err != nil {
		t.Fatalf("bob's push of the pending path: %v\n%s", err, out)
	} else {
		wantIn(t, "bob's push", out, "2 of 2 paths admitted", "1 already served by the gate (narinfo signed again",
			"1 NARs the gate held already") // the pending path's NAR is not sent again
	}
	r.mustTarget(sudo)
	sigs, _, _ = r.exec(r.env(), "nix", "path-info", "--sigs", "--store", r.lastTarget, sudoDep)
	wantIn(t, "signatures of the dependency in the target", sigs, "alice-1:", "bob-1:", "host-a-gate-1:")
	if p := run(t, false, "gate", "pending", "--dir", r.gateDir); !strings.Contains(p, "No pending paths") {
		t.Errorf("still pending after the second identity:\n%s", p)
	}

	// A revoked certificate: bob's paths are admitted and served; a CRL revoking bob
	// uploaded afterwards withdraws those admitted only on his signature at once.
	bobApp, _ := r.build("bob-app")
	if out, err := r.push("bob-1", nil, bobApp); err != nil {
		t.Fatalf("bob's push: %v\n%s", err, out)
	}
	r.mustTarget(bobApp)
	bob := readChain(t, r.p("bob-1.crt"))
	run(t, false, "nix", "revoke", "--dir", r.caDir, bob.Serial(), "--reason", "keyCompromise")
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix2.crl"))
	crl2, _ := os.ReadFile(r.p("nix2.crl"))
	status, body := r.put("/nixpki/crl", crl2)
	if status != 200 {
		t.Fatalf("CRL upload: %d %s", status, body)
	}
	wantIn(t, "CRL upload", body, "accepted (1 revoked)", "3 paths quarantined")
	for _, p := range []string{bobApp, sudo} {
		if s := r.narinfoStatus(p); s != 404 {
			t.Errorf("%s served (%d) after its signer's revocation", p, s)
		}
	}
	if r.narinfoStatus(app) != 200 || r.narinfoStatus(sudoDep) != 200 {
		t.Error("paths alice signed were withdrawn with bob's")
	}
	r.mustNotTarget(bobApp)
	r.mustNotTarget(sudo)
	top, _ = r.build("revoked")
	out, err = r.push("bob-1", nil, top)
	if err == nil {
		t.Fatal("push with a revoked certificate succeeded")
	}
	wantIn(t, "revoked", out, "refuses the certificate", "revoked at")
	// An older CRL does not undo the revocation.
	status, body = r.put("/nixpki/crl", mustRead(t, r.p("nix.crl")))
	if status != 200 || !strings.Contains(body, "not newer") || r.narinfoStatus(bobApp) != 404 {
		t.Errorf("older CRL: %d %s", status, body)
	}

	// The log answers who introduced a path, and detects a changed byte.
	audit := run(t, false, "gate", "audit", "--dir", r.gateDir, app)
	alice := readChain(t, r.p("alice-1.crt"))
	wantIn(t, "gate audit", audit, "admission", app, "signed by alice with key alice-1, certificate "+strings.ToUpper(alice.Serial()), "targets host-a, scope any")
	audit = run(t, false, "gate", "audit", "--dir", r.gateDir, bobApp)
	wantIn(t, "gate audit (quarantine)", audit, "admission", "quarantine", "revoked")
	wantIn(t, "log verify", run(t, false, "log", "verify", "--dir", r.gateDir), "Log OK")
	entries := filepath.Join(r.gateDir, "log", "entries")
	data := mustRead(t, entries)
	i := bytes.Index(data, []byte(`"type":"admission"`)) + 30
	data[i] ^= 0x01
	os.WriteFile(entries, data, 0o600)
	e := run(t, true, "log", "verify", "--dir", r.gateDir)
	wantIn(t, "log verify after a changed byte", e, "FAILED", "entry ", "admission")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamperedNAR uploads path's NAR with one byte changed, under the file name of its
// new content, and alice's genuine narinfo pointing to it: the gate must refuse the
// narinfo. The NAR under its original name with changed bytes is refused too.
func tamperedNAR(t *testing.T, r *gateRig, path string) {
	t.Helper()
	cache := r.p("tamper-cache")
	if _, e, err := r.exec(r.env(), "nix", "copy", "--to", "file://"+cache+"?compression=none&secret-key="+r.p("alice-1.sec"), path); err != nil {
		t.Fatalf("nix copy to a file cache: %v\n%s", err, e)
	}
	niText := mustRead(t, filepath.Join(cache, storepath.HashPart(path)+".narinfo"))
	ni, err := narinfo.Parse(bytes.NewReader(niText), storepath.DefaultStoreDir)
	if err != nil {
		t.Fatal(err)
	}
	narFile := mustRead(t, filepath.Join(cache, ni.URL))
	i := bytes.Index(narFile, []byte("dep "))
	narFile[i+1] = 'i' // "dep" → "dip"
	if s, b := r.put("/"+ni.URL, narFile); s != 400 || !strings.Contains(b, "but its name says") {
		t.Errorf("tampered NAR under its original name: %d %s", s, b)
	}
	sum, _, _ := nar.Hash(bytes.NewReader(narFile))
	u := "nar/" + base32.Encode(sum[:]) + ".nar"
	if s, b := r.put("/"+u, narFile); s != 200 {
		t.Fatalf("upload of a well-formed NAR: %d %s", s, b)
	}
	ni.URL, ni.FileHash, ni.FileSize = u, &sum, uint64(len(narFile))
	text, _ := ni.MarshalText()
	s, b := r.put("/"+storepath.HashPart(path)+".narinfo", text)
	if s != 400 {
		t.Fatalf("narinfo over a tampered NAR: %d %s", s, b)
	}
	wantIn(t, "tampered NAR", b, "rejected "+path, "the NAR does not match the narinfo")
}

// fileCacheNarInfo copies path signed by member into a file cache and returns its
// narinfo and NAR as nix copy wrote them.
func (r *gateRig) fileCacheNarInfo(member, path string) (*narinfo.NarInfo, []byte) {
	r.t.Helper()
	cache := r.p("cache-of-" + member + "-" + storepath.HashPart(path))
	if _, e, err := r.exec(r.env(), "nix", "copy", "--to", "file://"+cache+"?compression=none&secret-key="+r.p(member+".sec"), path); err != nil {
		r.t.Fatalf("nix copy to a file cache: %v\n%s", err, e)
	}
	ni, err := narinfo.Parse(bytes.NewReader(mustRead(r.t, filepath.Join(cache, storepath.HashPart(path)+".narinfo"))), storepath.DefaultStoreDir)
	if err != nil {
		r.t.Fatal(err)
	}
	return ni, mustRead(r.t, filepath.Join(cache, ni.URL))
}

// Unsigned narinfo fields cannot be used against the gate: unknown keys are not
// served (the target's nix copy of the path works, the key is gone), and a NAR that
// vanished before its narinfo (as expiry racing it does) is a 410 telling to push
// again, not a 500.
func TestGateNarInfoFieldsE2E(t *testing.T) {
	r := newGateRig(t)
	r.put("/nixpki/certs", mustRead(t, r.p("alice-1.crt"))) // 403 until the CRL is there
	if status, body := r.put("/nixpki/crl", mustRead(t, r.p("nix.crl"))); status != 200 {
		t.Fatalf("CRL: %d %s", status, body)
	}
	top, dep := r.build("fields")
	for _, p := range []string{dep, top} {
		ni, nar := r.fileCacheNarInfo("alice-1", p)
		ni.Extra = append(ni.Extra, narinfo.Field{Key: "X-Injected", Value: "1"})
		if s, b := r.put("/"+ni.URL, nar); s != 200 {
			t.Fatalf("NAR of %s: %d %s", p, s, b)
		}
		if p == top {
			// The NAR file vanishes (expiry) before the narinfo comes.
			os.Remove(filepath.Join(r.gateDir, filepath.FromSlash(ni.URL)))
			text, _ := ni.MarshalText()
			s, b := r.put("/"+storepath.HashPart(p)+".narinfo", text)
			if s != 410 {
				t.Fatalf("narinfo after its NAR vanished: %d %s", s, b)
			}
			wantIn(t, "vanished NAR", b, "rejected "+p, "push the path again")
			r.mustNotTarget(top)
			if s, b := r.put("/"+ni.URL, nar); s != 200 || !strings.Contains(b, "received NAR") {
				t.Fatalf("NAR of %s again: %d %s", p, s, b)
			}
		}
		text, _ := ni.MarshalText()
		if s, b := r.put("/"+storepath.HashPart(p)+".narinfo", text); s != 200 {
			t.Fatalf("narinfo of %s: %d %s", p, s, b)
		}
		_, served := r.narinfo(p)
		if strings.Contains(served, "X-Injected") || !strings.Contains(served, "Sig: alice-1:") {
			t.Errorf("served narinfo of %s:\n%s", p, served)
		}
	}
	r.mustTarget(top)
}

// Revoking a certificate withdraws an admitted referrer whose closure it leaves
// short of the referrer's threshold, though the path it signed still meets its own:
// the target's nix copy fails after the CRL, and gate audit says why.
func TestGateQuarantineClosureE2E(t *testing.T) {
	r := newGateRig(t)
	r.n.must("nix-store", "--generate-binary-cache-key", "frank-1", r.p("frank-1.sec"), r.p("frank-1.pub"))
	run(t, false, "nix", "certify", "--dir", r.caDir, "--public", r.p("frank-1.pub"), "--subject", "frank", "--targets", "host-a", "--scope", "any", "--out", r.p("frank-1.crt"))
	sudo, dep := r.build("fake-sudo-3.0")
	crl := []string{"--crl", r.p("nix.crl")}
	// alice pushes the closure (the dependency is admitted, sudo waits), bob signs
	// the dependency only, frank uploads sudo with plain nix copy (which skips the
	// dependency the gate serves).
	if out, err := r.push("alice-1", crl, sudo); err == nil || !strings.Contains(out, "pending "+sudo) {
		t.Fatalf("alice's push: %v\n%s", err, out)
	}
	if out, err := r.push("bob-1", crl, dep); err != nil {
		t.Fatalf("bob's push of the dependency: %v\n%s", err, out)
	}
	if status, body := r.put("/nixpki/certs", mustRead(t, r.p("frank-1.crt"))); status != 200 {
		t.Fatalf("frank's certificate: %d %s", status, body)
	}
	if out, err := r.rawCopy("frank-1", sudo); err != nil {
		t.Fatalf("frank's nix copy of sudo: %v\n%s", err, out)
	}
	r.mustTarget(sudo)
	bob := readChain(t, r.p("bob-1.crt"))
	run(t, false, "nix", "revoke", "--dir", r.caDir, bob.Serial(), "--reason", "keyCompromise")
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix2.crl"))
	status, body := r.put("/nixpki/crl", mustRead(t, r.p("nix2.crl")))
	if status != 200 {
		t.Fatalf("CRL upload: %d %s", status, body)
	}
	wantIn(t, "CRL upload", body, "accepted (1 revoked)", "1 paths quarantined")
	if r.narinfoStatus(dep) != 200 || r.narinfoStatus(sudo) != 404 {
		t.Errorf("after bob's revocation: dep %d, sudo %d; want 200, 404", r.narinfoStatus(dep), r.narinfoStatus(sudo))
	}
	r.mustNotTarget(sudo)
	audit := run(t, false, "gate", "audit", "--dir", r.gateDir, sudo)
	wantIn(t, "gate audit", audit, "quarantine", "its closure no longer meets its threshold: "+filepath.Base(dep)+" is left with 1 of the 2", "(bob, key bob-1)")
}

// Revoking the Nix intermediate with a CRL of the root (nixpki nix crl --root)
// withdraws what its certificates let in, and the target's copy fails.
func TestGateRootCRLE2E(t *testing.T) {
	r := newGateRig(t)
	app, _ := r.build("root-crl-app")
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, app); err != nil {
		t.Fatalf("alice's push: %v\n%s", err, out)
	}
	r.mustTarget(app)
	inter, err := x509util.ReadCertFile(filepath.Join(r.caDir, "nix-intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, false, "cert", "revoke", "--dir", r.caDir, x509util.SerialHex(inter.SerialNumber), "--reason", "cACompromise")
	run(t, false, "nix", "crl", "--dir", r.caDir, "--root", "--out", r.p("root.crl"))
	status, body := r.put("/nixpki/crl", mustRead(t, r.p("root.crl")))
	if status != 200 {
		t.Fatalf("root CRL upload: %d %s", status, body)
	}
	wantIn(t, "root CRL upload", body, "accepted (1 revoked)", "2 paths quarantined")
	r.mustNotTarget(app)
	wantIn(t, "gate audit", run(t, false, "gate", "audit", "--dir", r.gateDir, app), "quarantine", "(alice, key alice-1) revoked")
	top, _ := r.build("root-crl-after")
	out, err := r.push("alice-1", nil, top)
	if err == nil {
		t.Fatal("push under a revoked intermediate succeeded")
	}
	wantIn(t, "push under a revoked intermediate", out, "was revoked", "by CRL number")
}
