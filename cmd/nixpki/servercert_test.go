package main

import (
	"crypto/tls"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"nixpki/internal/testutil"
)

// A restart reuses the server's own certificate while it is good, instead of
// issuing another for the same names each time.
func TestServeRestartReusesServerCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	run(t, false, "init", "--dir", dir, "--name", "Restart", "--dns", "ca.internal")
	serial := func() string {
		httpsAddr, httpAddr := testutil.FreePort(t), testutil.FreePort(t)
		cmd := exec.Command(nixpkiBin(t), "serve", "--dir", dir, "--listen", httpsAddr, "--http-listen", httpAddr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
		waitFor(t, 30*time.Second, "serve to answer", func() bool {
			resp, err := http.Get("http://" + httpAddr + "/health")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == http.StatusOK
		})
		conn, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first, second := serial(), serial()
	if first != second {
		t.Fatalf("the restarted server presents a new certificate (%s, then %s)", first, second)
	}
}
