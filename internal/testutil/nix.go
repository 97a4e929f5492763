package testutil

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nixConfig isolates the tests' Nix from the machine's configuration: no build
// users, no sandbox, no substituters, and no caching of narinfo lookups, so a test
// sees every change it makes to a binary cache.
const nixConfig = "experimental-features = nix-command\n" +
	"build-users-group =\n" +
	"sandbox = false\n" +
	"substituters =\n" +
	"narinfo-cache-positive-ttl = 0\n" +
	"narinfo-cache-negative-ttl = 0\n"

// Nix runs the real Nix (single-user, as root, no daemon) with a configuration and
// cache of the test's own.
type Nix struct {
	t testing.TB
	// Dir is the test's own directory; commands run in it.
	Dir string
	// Env is the commands' environment: the test process's, with NIX_CONFIG and
	// XDG_CACHE_HOME of the test's own.
	Env []string
}

// NewNix returns a Nix for the test. It needs nix, nix-store and nix-build, and
// root; without them it fails the test in CI (CI=true) and skips it elsewhere.
func NewNix(t testing.TB) *Nix {
	t.Helper()
	for _, tool := range []string{"nix", "nix-store", "nix-build"} {
		NeedTool(t, tool)
	}
	// A single-user Nix without a daemon builds into the store directly, so it
	// needs root.
	if os.Geteuid() != 0 {
		const msg = "the Nix tests need root (single-user Nix, no daemon)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NIX_CONFIG=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			env = append(env, kv)
		}
	}
	env = append(env, "NIX_CONFIG="+nixConfig, "XDG_CACHE_HOME="+filepath.Join(dir, "xdg-cache"))
	return &Nix{t: t, Dir: dir, Env: env}
}

// Path returns the path of name inside Dir.
func (n *Nix) Path(name string) string { return filepath.Join(n.Dir, name) }

// Run runs a command and returns its stdout, stderr and exit status. A command
// that cannot be started fails the test.
func (n *Nix) Run(args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	return n.RunInput(nil, args...)
}

// RunInput is Run with stdin (none if nil).
func (n *Nix) RunInput(stdin []byte, args ...string) (stdout, stderr string, code int) {
	n.t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Dir = n.Env, n.Dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	if err != nil {
		n.t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), 0
}

// Must runs a command, fails the test if it exits non-zero, and returns its
// stdout.
func (n *Nix) Must(args ...string) string {
	n.t.Helper()
	out, errOut, code := n.Run(args...)
	if code != 0 {
		n.t.Fatalf("%s: exit %d\nstderr:\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// Build writes a Nix expression to a file in Dir, builds it with nix-build and
// returns the output path. Derivations that run commands should set
// PATH = "/usr/bin:/bin"; (Nix gives builders no usable PATH of their own).
func (n *Nix) Build(expr string) string {
	n.t.Helper()
	sum := sha256.Sum256([]byte(expr))
	f := n.Path("expr-" + hex.EncodeToString(sum[:8]) + ".nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(n.Must("nix-build", "--no-out-link", f))
}

// BuildSmallClosure builds, with nix-build, a closure of three new paths named
// after prefix: "-top", a directory that refers to "-dep" (a file, also linked
// from top) and to "-fixed" (a flat fixed-output file, so content-addressed).
// It returns top's path.
func (n *Nix) BuildSmallClosure(prefix string) string {
	n.t.Helper()
	return n.Build(fmt.Sprintf(`
let dep = derivation { name = "%[1]s-dep"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                       builder = "/bin/sh"; args = [ "-c" "echo dep %[2]d > $out" ]; };
    fixed = derivation { name = "%[1]s-fixed"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                         builder = "/bin/sh"; args = [ "-c" "echo fixed > $out" ]; outputHashMode = "flat";
                         outputHashAlgo = "sha256"; outputHash = builtins.hashString "sha256" "fixed\n"; };
in derivation { name = "%[1]s-top"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" "mkdir $out; echo ${dep} ${fixed} > $out/refs; ln -s ${dep} $out/dep" ]; }
`, prefix, time.Now().UnixNano()))
}
