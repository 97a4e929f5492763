package main

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// cert list says what a Nix signing certificate is for: its key name, targets and
// scope, in the table and in JSON.
func TestCertListShowsNixConstraints(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ca")
	p := func(n string) string { return filepath.Join(tmp, n) }
	run(t, false, "init", "--dir", dir, "--name", "List", "--dns", "ca.internal")
	run(t, false, "nix", "key", "generate", "--name", "alice-1", "--out-secret", p("alice.sec"), "--out-public", p("alice.pub"))
	run(t, false, "nix", "certify", "--dir", dir, "--public", p("alice.pub"), "--subject", "alice", "--targets", "lab-*,build-1", "--out", p("alice.crt"))
	wantIn(t, "cert list", run(t, false, "cert", "list", "--dir", dir, "--issuer", "nix"), "NAMES", "key alice-1 targets lab-*,build-1 scope any")
	var listed []certJSON
	if err := json.Unmarshal([]byte(run(t, false, "cert", "list", "--dir", dir, "--issuer", "nix", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].KeyName != "alice-1" || len(listed[0].Targets) != 2 || listed[0].Scope != "any" {
		t.Fatalf("cert list --json: %+v", listed)
	}
}
