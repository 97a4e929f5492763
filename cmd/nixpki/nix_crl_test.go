package main

import (
	"path/filepath"
	"testing"

	"nixpki/internal/x509util"
)

// nix crl --root on a CA whose root key was carried away says where the key was
// expected and how to pass it; with --root-key it works.
func TestNixRootCRLWithoutRootKey(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", dir, "--name", "Offline", "--dns", "ca.internal", "--offline-root")
	wantIn(t, "nix crl --root without the root key", run(t, true, "nix", "crl", "--dir", dir, "--root", "--out", filepath.Join(tmp, "root.crl")),
		"expected at", "does not exist", "--offline-root", "--root-key K")
	run(t, false, "nix", "crl", "--dir", dir, "--root", "--root-key", filepath.Join(dir, "offline", "root.key"), "--out", filepath.Join(tmp, "root.crl"))
	if _, err := openssl(t, "crl", "-inform", "DER", "-in", filepath.Join(tmp, "root.crl"), "-noout"); err != nil {
		t.Fatalf("the root's CRL: %v", err)
	}
}

// Once the CA has revoked its own Nix intermediate, it certifies nothing more under
// it, and says what the way out is.
func TestCertifyUnderRevokedIntermediateRefused(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	p := func(n string) string { return filepath.Join(tmp, n) }
	run(t, false, "init", "--dir", dir, "--name", "Revoked", "--dns", "ca.internal")
	run(t, false, "nix", "key", "generate", "--name", "alice-1", "--out-secret", p("alice.sec"), "--out-public", p("alice.pub"))
	inter, err := x509util.ReadCertFile(filepath.Join(dir, "nix-intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, false, "cert", "revoke", "--dir", dir, x509util.SerialHex(inter.SerialNumber), "--reason", "cACompromise")
	out := run(t, true, "nix", "certify", "--dir", dir, "--public", p("alice.pub"), "--subject", "alice", "--targets", "host-a", "--out", p("alice.crt"))
	wantIn(t, "certify under a revoked intermediate", out, "nix intermediate", "was revoked at", "nixpki init --dir NEWDIR")
}
