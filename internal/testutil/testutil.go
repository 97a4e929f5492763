// Package testutil holds helpers shared by nixpki's tests: finding the real tools
// (openssl, nix, lego) they drive, and free loopback ports.
package testutil

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a command-line tool. A missing tool fails the test
// in CI (CI=true) and skips it elsewhere.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; CI must install it (see scripts/test.sh)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// FreePort returns a loopback TCP address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
