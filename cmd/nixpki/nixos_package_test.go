package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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

// TestNixPackage: nix/package.nix builds cmd/nixpki with the version passed by
// ldflags (what --version prints), and flake.nix parses.
func TestNixPackage(t *testing.T) {
	nixInst := testutil.NeedTool(t, "nix-instantiate")
	lib := nixpkgsLib(t)
	pkg, _ := filepath.Abs(filepath.Join("..", "..", "nix", "package.nix"))
	expr := fmt.Sprintf(`let lib = %s; p = import (/. + %q) { inherit lib; buildGoModule = a: a; version = "1.2.3"; };
in { inherit (p) pname ldflags subPackages; mainProgram = p.meta.mainProgram; }`, lib, pkg)
	out, err := exec.Command(nixInst, "--eval", "--strict", "--json", "--readonly-mode", "-E", expr).Output()
	if err != nil {
		t.Fatalf("evaluating nix/package.nix: %v", err)
	}
	var p struct {
		Pname, MainProgram   string
		Ldflags, SubPackages []string
	}
	json.Unmarshal(out, &p)
	if p.Pname != "nixpki" || p.MainProgram != "nixpki" || !slices.Contains(p.Ldflags, "-X main.version=1.2.3") || fmt.Sprint(p.SubPackages) != "[cmd/nixpki]" {
		t.Fatalf("package: %s", out)
	}
	if o, err := exec.Command(nixInst, "--parse", filepath.Join("..", "..", "flake.nix")).CombinedOutput(); err != nil {
		t.Fatalf("flake.nix: %v\n%s", err, o)
	}
}
