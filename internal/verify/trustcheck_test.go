package verify

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"nixpki/internal/enroll"
	"nixpki/internal/nixcert"
	"nixpki/internal/x509util"
)

// certifyFor certifies a public key for subject on the given targets.
func (c *testCA) certifyFor(pubFile, subject string, targets ...string) string {
	c.t.Helper()
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		c.t.Fatal(err)
	}
	iss, err := c.auth.Certify(context.Background(), enroll.CertifyRequest{PublicKey: pub, Subject: subject, Targets: targets, Scope: nixcert.Scope{}, Requester: "test"})
	if err != nil {
		c.t.Fatal(err)
	}
	out := strings.TrimSuffix(pubFile, ".pub") + "-" + x509util.SerialHex(iss.Cert.SerialNumber) + ".crt"
	if err := os.WriteFile(out, iss.ChainPEM(), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return out
}

// A certificate counts only on the machines its targets name: bob's lab-*
// certificate vouches for nothing on build-1.
func TestTargetIsChecked(t *testing.T) {
	f := newFixture(t)
	_, bobSec, bobPub := f.n.key("bob-1")
	bobCrt := f.c.certifyFor(bobPub, "bob", "lab-*")
	_, root := f.n.signedStores(f.top, bobSec, bobPub)
	st := openLocal(t, root)
	verifyFor := func(target string) outcome {
		p := policy(t, PolicyConfig{Root: f.c.root, Certs: []string{bobCrt}, Target: target})
		return verifyStore(t, st, Options{Args: []string{f.top}, Recursive: true, SigsNeeded: 1, Policy: p})
	}
	o := verifyFor("build-1")
	wantCode(t, o, ExitUntrusted)
	wantMessage(t, o, "0 of 1 required signatures", `its targets (lab-*) do not include this machine "build-1" (--target)`)
	wantCode(t, verifyFor("lab-3"), 0)
}

// Revocation does not fail open: without a CRL no certificate counts and verify says
// why; a CRL older than MaxCRLAge is refused; NoCRL trusts without checking.
func TestRevocationNotCheckedIsUntrusted(t *testing.T) {
	f := newFixture(t)
	_, root := f.n.signedStores(f.top, f.aliceSec, f.alicePub)
	st := openLocal(t, root)
	load := func(cfg PolicyConfig) (*Policy, []string, []string) {
		var problems, warnings []string
		cfg.Root, cfg.Certs, cfg.Target = f.c.root, []string{f.aliceCrt}, testTarget
		p := LoadPolicy(cfg, func(err error) { problems = append(problems, err.Error()) }, func(err error) { warnings = append(warnings, err.Error()) })
		return p, problems, warnings
	}
	check := func(p *Policy) outcome {
		return verifyStore(t, st, Options{Args: []string{f.top}, Recursive: true, Policy: p})
	}

	p, problems, warnings := load(PolicyConfig{})
	o := check(p)
	wantCode(t, o, ExitUntrusted)
	wantMessage(t, o, "no CRL of")
	if len(problems) != 0 || len(warnings) != 1 || !strings.Contains(warnings[0], "revocation was not checked") || !strings.Contains(warnings[0], "--no-crl") {
		t.Fatalf("without a CRL: problems %q, warnings %q", problems, warnings)
	}

	crl := f.c.crl()
	p, problems, _ = load(PolicyConfig{CRLs: []string{crl}, MaxCRLAge: time.Hour, Now: time.Now().Add(2 * time.Hour)})
	wantCode(t, check(p), ExitUntrusted)
	if len(problems) != 1 || !strings.Contains(problems[0], "more than --max-crl-age 1h0m0s ago") {
		t.Fatalf("an old CRL: problems %q", problems)
	}

	p, problems, _ = load(PolicyConfig{CRLs: []string{crl}, MaxCRLAge: time.Hour})
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	wantCode(t, check(p), 0)

	p, _, warnings = load(PolicyConfig{NoCRL: true})
	wantCode(t, check(p), 0)
	if len(warnings) != 0 {
		t.Fatalf("--no-crl warns %q", warnings)
	}
}
