package main

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// SIGHUP does not stop the server: it logs that a configuration change takes a
// restart, and the server keeps answering.
func TestServeSIGHUPSaysRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	httpAddr := testutil.FreePort(t)
	cmd := exec.Command(nixpkiBin(t), "serve", "--dir", dir, "--listen", testutil.FreePort(t), "--http-listen", httpAddr)
	var stderr testutil.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	healthy := func() bool {
		resp, err := http.Get("http://" + httpAddr + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	waitFor(t, 30*time.Second, "serve to answer", healthy)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the SIGHUP log line", func() bool { return strings.Contains(stderr.String(), "restart nixpki serve to apply changes") })
	if !healthy() {
		t.Fatalf("serve stopped answering after SIGHUP:\n%s", stderr.String())
	}
}

// waitFor polls cond every 100ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}
