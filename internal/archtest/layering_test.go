// Package archtest checks how nixpki's packages may depend on each other.
package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "nixpki/"

// targetSide are the packages that run on a fleet's machines (a gate, a
// member's push, verify): they must not link the CA's storage, its issuing
// code or its ACME server. A pattern ending in "/..." covers the packages
// below it too.
var targetSide = []string{
	"internal/gate/...",
	"internal/verify/...",
	"internal/push/...",
	"internal/nix/...",
	"internal/nixcert/...",
	"internal/x509util/...",
	"internal/sha256x16",
}

// caSide are the packages target-side code must not import, directly or not.
var caSide = []string{
	"internal/store/...",
	"internal/ca/...",
	"internal/acme/...",
	"internal/enroll/...",
}

type listed struct {
	ImportPath string
	Deps       []string
}

// listPackages runs go list -deps -json on the module's packages (tests
// excluded: a test may set up a CA) and returns each package with its
// transitive dependencies.
func listPackages(t *testing.T) []listed {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Deps", module+"...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// matches reports whether the import path is covered by one of the patterns.
func matches(importPath string, patterns []string) bool {
	rel, ok := strings.CutPrefix(importPath, module)
	if !ok {
		return false
	}
	for _, p := range patterns {
		if base, tree := strings.CutSuffix(p, "/..."); tree {
			if rel == base || strings.HasPrefix(rel, base+"/") {
				return true
			}
		} else if rel == p {
			return true
		}
	}
	return false
}

// TestTargetSideDoesNotImportCA fails when a target-side package depends,
// directly or through another package, on the CA side.
func TestTargetSideDoesNotImportCA(t *testing.T) {
	pkgs := listPackages(t)
	checked := 0
	for _, p := range pkgs {
		if !matches(p.ImportPath, targetSide) {
			continue
		}
		checked++
		for _, d := range p.Deps {
			if matches(d, caSide) {
				t.Errorf("%s imports %s: target-side code must not link the CA's packages (see docs/architecture.md)", p.ImportPath, d)
			}
		}
	}
	// The patterns must keep naming real packages.
	for _, pat := range targetSide {
		if !slices.ContainsFunc(pkgs, func(p listed) bool { return matches(p.ImportPath, []string{pat}) }) {
			t.Errorf("no package matches the target-side pattern %s: update the list", pat)
		}
	}
	if checked == 0 {
		t.Fatal("no target-side package found")
	}
}

// core are the packages at the bottom: formats and primitives that every
// feature may use. They import only each other (and outside modules): the
// nix/... packages, the local store and the binary-cache client among them,
// import no feature.
var core = []string{
	"internal/nix/...",
	"internal/x509util",
	"internal/sha256x16",
	"internal/keys",
	"internal/tlog",
	"internal/problem",
	"internal/config",
	"internal/metrics",
}

// TestCoreImportsOnlyCore fails when a core package depends on a feature
// package or on a command: imports flow from cmd to features to core.
func TestCoreImportsOnlyCore(t *testing.T) {
	for _, p := range listPackages(t) {
		if !matches(p.ImportPath, core) {
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module) && !matches(d, core) {
				t.Errorf("%s imports %s: core packages import only core packages (see docs/architecture.md)", p.ImportPath, d)
			}
		}
	}
}

// targetFeatures run alone on a machine: a gate, a member's push, a verifier.
// None links another; what they share (NAR naming, the local store, the
// binary-cache client) is core, under nix/.... verify reads a gate through an
// interface of its own, which cmd/nixpki implements with gate.
var targetFeatures = []string{
	"internal/gate/...",
	"internal/verify/...",
	"internal/push/...",
}

// TestTargetFeaturesAreSeparate fails when a target-side feature depends,
// directly or not, on another one.
func TestTargetFeaturesAreSeparate(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, own := range targetFeatures {
			if !matches(p.ImportPath, []string{own}) {
				continue
			}
			for _, d := range p.Deps {
				for _, other := range targetFeatures {
					if other != own && matches(d, []string{other}) {
						t.Errorf("%s imports %s: gate, verify and push share only core packages (see docs/architecture.md)", p.ImportPath, d)
					}
				}
			}
		}
	}
}

// TestTestutilOnlyInTests fails when a program's package links the test
// helpers.
func TestTestutilOnlyInTests(t *testing.T) {
	for _, p := range listPackages(t) {
		if slices.Contains(p.Deps, module+"internal/testutil") {
			t.Errorf("%s imports internal/testutil, which is for tests only", p.ImportPath)
		}
	}
}
