package verify

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"nixpki/internal/gate"
)

// TestGateAdmissions: a closure pushed by real Nix through a real gate, whose
// signer's certificate has since expired, is trusted on the strength of the gate's
// log (admitted while the certificate was valid), and not without it; a revoked
// certificate is refused whatever the log says.
func TestGateAdmissions(t *testing.T) {
	f := newFixture(t)
	n, c, top, aliceSec, alicePub, aliceCrt, aliceSerial := f.n, f.c, f.top, f.aliceSec, f.alicePub, f.aliceCrt, f.serial

	gdir := filepath.Join(t.TempDir(), "gate")
	if _, _, err := gate.Init(gate.InitOptions{Dir: gdir, Name: "lab-1", RootFile: c.root}); err != nil {
		t.Fatal(err)
	}
	g, err := gate.Open(gdir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	defer func() { srv.Close(); g.Close() }()
	crlDER, _ := os.ReadFile(c.crl())
	upload := append(mustRead(t, aliceCrt), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})...)
	req, _ := http.NewRequest("PUT", srv.URL+"/nixpki/certs", bytes.NewReader(upload))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("uploading alice's certificate: %d %s", resp.StatusCode, body)
	}
	n.Must("nix", "copy", "--to", srv.URL+"?compression=zstd&secret-key="+aliceSec, top)
	_, root := n.signedStores(top, aliceSec, alicePub)
	st := openLocal(t, root)

	later := time.Now().Add(30 * 24 * time.Hour) // alice's certificate has expired by then
	run := func(cfg PolicyConfig) outcome {
		cfg.Now = later
		return verifyStore(t, st, Options{Args: []string{top}, Recursive: true, Policy: policy(t, cfg)})
	}
	o := run(PolicyConfig{Root: c.root, Certs: []string{aliceCrt}})
	wantCode(t, o, ExitUntrusted)
	wantMessage(t, o, "alice-1: certificate "+aliceSerial+" of alice expired at ")

	o = run(PolicyConfig{Gate: gdir, OpenGate: openTestGate, Certs: []string{aliceCrt}}) // the gate's root by default
	wantCode(t, o, 0)
	// The gate's own records supply the certificate too: no --certs needed.
	if o := run(PolicyConfig{Gate: gdir, OpenGate: openTestGate}); o.code() != 0 {
		t.Fatalf("--gate alone: exit %d, messages %v", o.code(), o.messages)
	}
	s := o.results[top].Signers
	if len(s) != 1 || s[0].Via != "gate" || s[0].Identity != "alice" || s[0].Admitted == nil || time.Since(*s[0].Admitted) > time.Minute {
		t.Fatalf("signers %+v", s)
	}

	crl := c.revoke(aliceSerial)
	o = run(PolicyConfig{Gate: gdir, OpenGate: openTestGate, Root: c.root, Certs: []string{aliceCrt}, CRLs: []string{crl}})
	wantCode(t, o, ExitUntrusted)
	wantMessage(t, o, "alice-1: certificate "+aliceSerial+" of alice revoked at ")
	// A CRL uploaded to the gate counts as well, without --crl.
	req, _ = http.NewRequest("PUT", srv.URL+"/nixpki/crl", bytes.NewReader(mustRead(t, crl)))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("uploading the CRL to the gate: %v %v", resp, err)
	}
	o = run(PolicyConfig{Gate: gdir, OpenGate: openTestGate})
	wantCode(t, o, ExitUntrusted)
	wantMessage(t, o, "alice-1: certificate "+aliceSerial+" of alice revoked at ")

	// A gate whose log was tampered with is not believed.
	entries, _ := filepath.Glob(filepath.Join(gdir, gate.LogDir, "*"))
	for _, e := range entries {
		if b, err := os.ReadFile(e); err == nil && bytes.Contains(b, []byte(top)) {
			os.WriteFile(e, bytes.ReplaceAll(b, []byte("alice"), []byte("malice")), 0o644)
		}
	}
	var problems []string
	LoadPolicy(PolicyConfig{Gate: gdir, OpenGate: openTestGate, Certs: []string{aliceCrt}}, func(err error) { problems = append(problems, err.Error()) }, func(error) {})
	if len(problems) == 0 {
		t.Fatal("a tampered gate log was accepted")
	}
}

// testGate reads a gate directory through the gate package, as the command
// wires it.
type testGate string

func openTestGate(dir string) (GateSource, error) { return testGate(dir), nil }

func (d testGate) Root() (*x509.Certificate, error) { return gate.ReadRoot(string(d)) }

func (d testGate) Records() ([]*x509.Certificate, []*x509.Certificate, [][]byte, error) {
	return gate.Records(string(d))
}

func (d testGate) Admissions() (out []GateAdmission, err error) {
	events, _, err := gate.Audit(string(d), "")
	for _, e := range events {
		for _, s := range e.Signers {
			if e.Type == "admission" {
				out = append(out, GateAdmission{e.Path, Admission{e.Time, s.Cert, s.Sig, e.Entry}})
			}
		}
	}
	return out, err
}
