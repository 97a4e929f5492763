package server

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// newCA initialises and opens a CA of the key type in a temporary directory.
func newCA(t *testing.T, keyType string) *ca.CA {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "ca")
	cfg := config.Defaults()
	cfg.KeyType = keyType
	cfg.DNSNames, cfg.IPAddresses = []string{"localhost"}, []string{"127.0.0.1"}
	if _, err := ca.Init(ctx, ca.InitOptions{Dir: dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(ctx, dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writePEM(t *testing.T, path string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openssl ocsp, as relying parties run it, gets a verified answer whatever CertID hash
// it asks with, with its nonce echoed, for every intermediate key type.
func TestOCSPWithOpenSSL(t *testing.T) {
	bin := testutil.NeedTool(t, "openssl")
	for _, kt := range []keys.Type{keys.P256, keys.P384, keys.Ed25519, keys.RSA3072} {
		t.Run(string(kt), func(t *testing.T) {
			c := newCA(t, string(kt))
			srv := &Server{CA: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			hs := httptest.NewServer(srv.HTTPHandler())
			defer hs.Close()
			key, _ := keys.Generate(keys.P256)
			iss, err := c.IssueTLS(context.Background(), ca.TLSRequest{Names: []string{"ocsp.test"}, PublicKey: key.Public()})
			if err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			leaf := writePEM(t, filepath.Join(tmp, "leaf.pem"), iss.Cert.Raw)
			inter := writePEM(t, filepath.Join(tmp, "tls.pem"), c.TLS.Cert.Raw)
			root := writePEM(t, filepath.Join(tmp, "root.pem"), c.Root.Raw)
			query := func(hash string) string {
				args := []string{"ocsp", "-issuer", inter}
				if hash != "" {
					args = append(args, hash) // the digest applies to the -cert after it
				}
				args = append(args, "-cert", leaf, "-url", hs.URL+"/ocsp", "-CAfile", root)
				out, err := exec.Command(bin, args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "Response verify OK") || strings.Contains(string(out), "WARNING") {
					t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			for _, h := range []string{"", "-sha256", "-sha384", "-sha512"} {
				if out := query(h); !strings.Contains(out, leaf+": good") {
					t.Fatalf("%s: not good:\n%s", h, out)
				}
			}
			if _, err := c.Revoke(context.Background(), x509util.SerialHex(iss.Cert.SerialNumber), ocsp.KeyCompromise); err != nil {
				t.Fatal(err)
			}
			if out := query("-sha256"); !strings.Contains(out, leaf+": revoked") || !strings.Contains(out, "keyCompromise") {
				t.Fatalf("after revocation:\n%s", out)
			}
		})
	}
}
