package main

import (
	"path/filepath"
	"testing"
)

// gate init prints a snippet that matches how the gate will listen: plain HTTP on
// loopback by default; HTTPS with a certificate from the CA, whose root the targets
// must then trust. Plain HTTP on another address is refused with the way out.
func TestGateInitSnippetMatchesListener(t *testing.T) {
	tmp := t.TempDir()
	caDir := filepath.Join(tmp, "ca")
	run(t, false, "init", "--dir", caDir, "--name", "Snip", "--dns", "ca.internal")
	root := filepath.Join(caDir, "root.crt")

	out := run(t, false, "gate", "init", "--dir", filepath.Join(tmp, "g1"), "--name", "host-a", "--root", root)
	wantIn(t, "gate init (plain HTTP)", out, `substituters = [ "http://127.0.0.1:8501" ]`, "plain HTTP on 127.0.0.1:8501 (loopback)")

	out = run(t, true, "gate", "init", "--dir", filepath.Join(tmp, "g2"), "--name", "host-a", "--root", root, "--listen", "0.0.0.0:8501")
	wantIn(t, "gate init on all interfaces without TLS", out, "plain HTTP is only served on loopback", "--tls-cert and --tls-key, or --acme-directory")

	run(t, false, "cert", "issue", "--dir", caDir, "--san", "host-a", "--out-cert", filepath.Join(tmp, "gate.crt"), "--out-key", filepath.Join(tmp, "gate.key"))
	out = run(t, false, "gate", "init", "--dir", filepath.Join(tmp, "g3"), "--name", "host-a", "--root", root, "--listen", "0.0.0.0:8501",
		"--tls-cert", filepath.Join(tmp, "gate.crt"), "--tls-key", filepath.Join(tmp, "gate.key"))
	wantIn(t, "gate init (HTTPS from the CA)", out, `substituters = [ "https://host-a:8501" ]`, "comes from this CA", "security.pki.certificates")
}
