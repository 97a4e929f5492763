package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"nixpki/internal/testutil"
)

// TestVendorHash: nix/package.nix's vendorHash is the hash of what go.mod and go.sum
// vendor to, so the package builds after every dependency change.
func TestVendorHash(t *testing.T) {
	nix := testutil.NeedTool(t, "nix")
	pkg, err := os.ReadFile(filepath.Join("..", "..", "nix", "package.nix"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`vendorHash = "([^"]+)";`).FindSubmatch(pkg)
	if m == nil {
		t.Fatal(`nix/package.nix has no vendorHash = "sha256-…";`)
	}
	vendor := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command("go", "mod", "vendor", "-o", vendor)
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	out, err := exec.Command(nix, "--extra-experimental-features", "nix-command", "hash", "path", vendor).Output()
	if err != nil {
		t.Fatalf("nix hash path: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != string(m[1]) {
		t.Fatalf("nix/package.nix has vendorHash = %q, but go.mod/go.sum vendor to %s: set vendorHash = %q;", m[1], got, got)
	}
}
