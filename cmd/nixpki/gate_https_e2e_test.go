package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/gate"
	"nixpki/internal/testutil"
)

// TestGateHTTPS serves the gate over HTTPS, with a certificate from files and with
// one obtained from nixpki's own ACME directory (TLS-ALPN-01), and pushes and
// substitutes through it with real Nix.
func TestGateHTTPS(t *testing.T) {
	n := newNixTool(t)
	r := &gateRig{t: t, n: n, tmp: t.TempDir()}
	r.caDir = r.p("ca")
	run(t, false, "init", "--dir", r.caDir, "--name", "GateTLS", "--dns", "localhost", "--ip", "127.0.0.1")
	root := filepath.Join(r.caDir, "root.crt")
	n.must("nix-store", "--generate-binary-cache-key", "alice-1", r.p("alice-1.sec"), r.p("alice-1.pub"))
	run(t, false, "nix", "certify", "--dir", r.caDir, "--public", r.p("alice-1.pub"), "--subject", "alice", "--targets", "host-*,localhost", "--out", r.p("alice-1.crt"))
	run(t, false, "nix", "crl", "--dir", r.caDir, "--out", r.p("nix.crl"))
	gateAddr := testutil.FreePort(t)
	_, port, _ := strings.Cut(gateAddr, ":")
	caHTTPS, _ := serve(t, r.caDir, "--acme-tls-port", port)
	_, caPort, _ := strings.Cut(caHTTPS, ":")

	setup := func(name string, edit func(*gate.Config)) {
		r.gateDir = r.p(name)
		run(t, false, "gate", "init", "--dir", r.gateDir, "--name", name, "--root", root)
		cfg, err := gate.LoadConfig(r.gateDir)
		if err != nil {
			t.Fatal(err)
		}
		edit(&cfg)
		data, _ := cfg.Marshal()
		os.WriteFile(filepath.Join(r.gateDir, "config.json"), data, 0o600)
		r.gatePub = string(mustRead(t, filepath.Join(r.gateDir, "gate.pub")))
	}
	withRoot := func(env []string) []string { return append(env, "NIX_SSL_CERT_FILE="+root) }

	check := func(what string) {
		top, _ := r.build(what)
		args := []string{"nix", "push", "--gate", r.url, "--cert", r.p("alice-1.crt"), "--secret", r.p("alice-1.sec"), "--crl", r.p("nix.crl"), "--ca-file", root, top}
		if o, e, err := runEnv(t, r.env(), args...); err != nil {
			t.Fatalf("%s: push over HTTPS: %v\n%s%s", what, err, o, e)
		}
		store := r.p("target-" + what)
		if _, e, err := r.exec(withRoot(r.env()), "nix", "copy", "--from", r.url, "--to", store, "--option", "trusted-public-keys", r.gatePub, top); err != nil {
			t.Fatalf("%s: target copy over HTTPS: %v\n%s", what, err, e)
		}
	}

	// Certificate files, issued by the CA for 127.0.0.1.
	run(t, false, "cert", "issue", "--dir", r.caDir, "--san", "127.0.0.1", "--out-cert", r.p("gate.crt"), "--out-key", r.p("gate.key"))
	setup("host-files", func(c *gate.Config) { c.TLS = gate.TLS{CertFile: r.p("gate.crt"), KeyFile: r.p("gate.key")} })
	filesAddr := testutil.FreePort(t)
	startGate(t, r.gateDir, filesAddr)
	r.url = "https://" + filesAddr
	check("files")
	// Without the root, the push says how to trust it.
	top, _ := r.build("no-root")
	_, e, err := runEnv(t, r.env(), "nix", "push", "--gate", r.url, "--cert", r.p("alice-1.crt"), "--secret", r.p("alice-1.sec"), "--crl", r.p("nix.crl"), top)
	if err == nil || !strings.Contains(e, "pass the CA's root with --ca-file root.crt") {
		t.Fatalf("push to an HTTPS gate of an unknown CA: %v\n%s", err, e)
	}

	// ACME: the gate answers TLS-ALPN-01 on its own port for "localhost".
	setup("localhost", func(c *gate.Config) {
		c.ACME = gate.ACME{Directory: "https://localhost:" + caPort + "/acme/acme/directory", Names: []string{"localhost"}}
	})
	startGate(t, r.gateDir, gateAddr)
	r.url = "https://localhost:" + port
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := r.exec(nil, testutil.NeedTool(t, "curl"), "-sf", "--cacert", root, r.url+"/nix-cache-info")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate did not obtain its certificate over ACME within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	check("acme")
}
