package main

// End-to-end test of nixpki verify: a CA made and used through the CLI, a closure
// built and signed by real Nix, and the command's exit status, messages and JSON.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// verifyCLI runs nixpki verify and returns stdout, stderr and the exit status.
func verifyCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, err := runEnv(t, nil, append([]string{"verify"}, args...)...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, errOut, ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out, errOut, 0
}

type verifyJSON struct {
	Path     string   `json:"path"`
	OK       bool     `json:"ok"`
	Corrupt  bool     `json:"corrupt"`
	Trusted  bool     `json:"trusted"`
	Error    bool     `json:"error"`
	Problems []string `json:"problems"`
	Signers  []struct {
		Key, Identity, Via, Serial string
	} `json:"signers"`
}

func TestVerifyEndToEnd(t *testing.T) {
	n := testutil.NewNix(t)
	tmp := t.TempDir()
	p := func(name string) string { return filepath.Join(tmp, name) }
	dir := p("ca")
	run(t, false, "init", "--dir", dir, "--name", "VerifyE2E", "--dns", "ca.internal")
	root := filepath.Join(dir, "root.crt")
	n.Must("nix-store", "--generate-binary-cache-key", "alice-1", p("alice.sec"), p("alice.pub"))
	run(t, false, "nix", "certify", "--dir", dir, "--public", p("alice.pub"), "--subject", "alice", "--targets", "*", "--out", p("alice.crt"))
	serial := readChain(t, p("alice.crt")).Serial()

	expr := fmt.Sprintf(`let dep = derivation { name = "dep"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
	  builder = "/bin/sh"; args = [ "-c" "echo dep %[1]d > $out" ]; };
	in derivation { name = "app"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
	  builder = "/bin/sh"; args = [ "-c" "mkdir $out; echo ${dep} > $out/ref; head -c 5000 /dev/urandom > $out/data" ]; }`, time.Now().UnixNano())
	app := n.Build(expr)
	cache, store := p("cache"), p("store")
	n.Must("nix", "copy", "--to", "file://"+cache+"?compression=zstd&secret-key="+p("alice.sec"), app)
	alicePub, _ := os.ReadFile(p("alice.pub"))
	n.Must("nix", "copy", "--from", "file://"+cache, "--to", store, "--option", "trusted-public-keys", string(alicePub), app)
	run(t, false, "nix", "crl", "--dir", dir, "--out", p("nix0.crl"))
	trust := []string{"--root", root, "--certs", p("alice.crt"), "--crl", p("nix0.crl")}

	parse := func(stdout string) map[string]verifyJSON {
		t.Helper()
		out := map[string]verifyJSON{}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var v verifyJSON
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("JSON line %q: %v", line, err)
			}
			out[v.Path] = v
		}
		return out
	}

	// A signed closure verifies, in the chroot store and in the binary cache.
	for _, s := range []string{store, "file://" + cache} {
		stdout, stderr, code := verifyCLI(t, append(trust, "--store", s, "-r", "--json", app)...)
		res := parse(stdout)
		if code != 0 || len(res) != 2 || !res[app].OK || res[app].Signers[0].Identity != "alice" || res[app].Signers[0].Serial != serial {
			t.Fatalf("--store %s: exit %d, %+v\n%s", s, code, res, stderr)
		}
		if !strings.Contains(stderr, "checked 2 paths") || !strings.Contains(stderr, "2 ok, 0 corrupt, 0 untrusted, 0 with errors") {
			t.Fatalf("summary: %s", stderr)
		}
	}

	// Without a CRL revocation cannot be checked: untrusted, and verify says so,
	// unless --no-crl says to trust without checking.
	noCRL := []string{"--root", root, "--certs", p("alice.crt"), "--store", store, app}
	if _, stderr, code := verifyCLI(t, noCRL...); code != 2 || !strings.Contains(stderr, "revocation was not checked") || !strings.Contains(stderr, "--no-crl") {
		t.Fatalf("without --crl: exit %d:\n%s", code, stderr)
	}
	if _, stderr, code := verifyCLI(t, append(noCRL, "--no-crl")...); code != 0 {
		t.Fatalf("--no-crl: exit %d:\n%s", code, stderr)
	}

	// One signer, two needed: bit 2.
	_, stderr, code := verifyCLI(t, append(trust, "--store", store, "--sigs-needed", "2", app)...)
	if code != 2 || !strings.Contains(stderr, "is untrusted: 1 of 2 required signatures (signed by alice)") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}

	// A malformed certificate file and a missing path are reported; the rest is
	// still checked; bit 4.
	os.WriteFile(p("garbage.pem"), []byte("not a certificate"), 0o644)
	missing := "/nix/store/00000000000000000000000000000000-missing"
	stdout, stderr, code := verifyCLI(t, append(trust, "--certs", p("garbage.pem"), "--store", store, "--json", missing, app)...)
	res := parse(stdout)
	if code != 4 || !res[app].OK || !res[missing].Error || !strings.Contains(stderr, "garbage.pem: no PEM CERTIFICATE block") || !strings.Contains(stderr, "path '"+missing+"' is not valid") {
		t.Fatalf("exit %d, %+v:\n%s", code, res, stderr)
	}

	// Revoked, and a byte changed: bits 1 and 2.
	run(t, false, "nix", "revoke", "--dir", dir, serial, "--reason", "keyCompromise")
	run(t, false, "nix", "crl", "--dir", dir, "--out", p("nix.crl"))
	data := filepath.Join(store, app, "data")
	b, _ := os.ReadFile(data)
	b[100] ^= 0xff
	os.Chmod(data, 0o644)
	os.WriteFile(data, b, 0o444)
	_, stderr, code = verifyCLI(t, append(trust, "--crl", p("nix.crl"), "--store", store, "-r", app)...)
	if code != 3 || !strings.Contains(stderr, "path '"+app+"' was modified! expected hash") ||
		!strings.Contains(stderr, "alice-1: certificate "+serial+" of alice revoked at ") || !strings.Contains(stderr, "(keyCompromise)") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}

	// Usage errors.
	if _, stderr, code := verifyCLI(t); code != 1 || !strings.Contains(stderr, "no paths given") {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
}
