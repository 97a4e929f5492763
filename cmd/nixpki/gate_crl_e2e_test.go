package main

import (
	"testing"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/gate"
	"nixpki/internal/testutil"
)

// A gate that reaches the CA's HTTP listener fetches its CRL on its own: a
// revocation quarantines what the revoked certificate alone let in, with no push
// and nobody carrying a CRL.
func TestGateFetchesCRL(t *testing.T) {
	httpAddr := testutil.FreePort(t)
	r := newGateRigWith(t,
		[]string{"--dns", "ca.internal", "--ip", "127.0.0.1", "--external-url", "http://" + httpAddr},
		func(c *gate.Config) { c.CRLFetchInterval = config.Duration(time.Second) })
	serveOn(t, r.caDir, testutil.FreePort(t), httpAddr)

	app, _ := r.build("fetched-crl-app")
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, app); err != nil {
		t.Fatalf("alice's push: %v\n%s", err, out)
	}
	r.mustTarget(app)

	run(t, false, "nix", "revoke", "--dir", r.caDir, "--subject", "alice")
	deadline := time.Now().Add(30 * time.Second)
	for r.narinfoStatus(app) != 404 {
		if time.Now().After(deadline) {
			t.Fatal("the gate still serves alice's path 30s after her revocation")
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.mustNotTarget(app)
	wantIn(t, "gate audit", run(t, false, "gate", "audit", "--dir", r.gateDir, app), "quarantine", "(alice, key alice-1) revoked")
	wantIn(t, "gate log", run(t, false, "log", "show", "--dir", r.gateDir, "--type", "crl"), "fetch http://"+httpAddr+"/crl/nix.crl")
}

// An offline gate gets a CRL alone with `nixpki gate crl`: no store paths, no
// certificate; what is not a CRL is refused with the file's name.
func TestGateCRLUpload(t *testing.T) {
	r := newGateRig(t)
	app, _ := r.build("uploaded-crl-app")
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, app); err != nil {
		t.Fatalf("alice's push: %v\n%s", err, out)
	}
	r.mustTarget(app)
	run(t, false, "nix", "revoke", "--dir", r.caDir, "--subject", "alice")
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix2.crl"))
	out := run(t, false, "gate", "crl", "--gate", r.url, r.p("nix2.crl"))
	wantIn(t, "gate crl", out, "nix2.crl: CRL number", "accepted (2 revoked)", "paths quarantined")
	r.mustNotTarget(app)
	out = run(t, true, "gate", "crl", "--gate", r.url, r.p("alice-1.pub"))
	wantIn(t, "gate crl of a public key", out, "alice-1.pub", "400", "the gate refused")
}
