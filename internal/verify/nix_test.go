package verify

// Helpers for the tests that drive real Nix (Nix 2.8 as root, no daemon) and a
// real nixpki CA. Without Nix they are skipped, unless CI=true.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/enroll"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// nixT runs Nix commands with a configuration and narinfo cache of the test's own.
type nixT struct {
	*testutil.Nix
	t *testing.T
}

func newNixT(t *testing.T) *nixT {
	t.Helper()
	return &nixT{Nix: testutil.NewNix(t), t: t}
}

func (n *nixT) write(name, data string, mode os.FileMode) string {
	n.t.Helper()
	p := n.Path(name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// buildClosure builds four input-addressed paths: "top" refers to "app", which
// refers to "tree" (a directory with an executable, a symlink, a subdirectory and
// a reference to itself) and to "dep" (a file). It returns top's path.
func (n *nixT) buildClosure() string {
	n.t.Helper()
	var b [6]byte
	rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	expr := fmt.Sprintf(`
let mk = name: script: derivation { inherit name; system = builtins.currentSystem;
      PATH = "/usr/bin:/bin"; builder = "/bin/sh"; args = [ "-c" script ]; nonce = "%s"; };
    dep = mk "dep" "echo dep > $out";
    tree = mk "tree" ''
      mkdir -p $out/bin $out/share/doc
      printf '#!/bin/sh\necho hi\n' > $out/bin/hello; chmod 755 $out/bin/hello
      head -c 70000 /dev/urandom > $out/share/blob
      echo $out > $out/share/doc/self
      ln -s ../bin/hello $out/share/link
    '';
    app = mk "app" "echo ${dep} ${tree} > $out";
in mk "top" "echo ${app} > $out"
`, nonce)
	return n.Build(expr)
}

// closurePaths lists a path's closure in a store ("" for the default one).
func (n *nixT) closurePaths(store, p string) []string {
	n.t.Helper()
	args := []string{"nix-store", "-qR", p}
	if store != "" {
		args = []string{"nix-store", "--store", store, "-qR", p}
	}
	return strings.Fields(n.Must(args...))
}

// key makes a Nix signing key and writes NAME.sec and NAME.pub.
func (n *nixT) key(name string) (signing.SecretKey, string, string) {
	n.t.Helper()
	k, err := signing.GenerateKey(name)
	if err != nil {
		n.t.Fatal(err)
	}
	sec := n.write(name+".sec", k.String(), 0o600)
	pub := n.write(name+".pub", k.Public().String(), 0o644)
	return k, sec, pub
}

// signedStores copies p's closure to a file:// binary cache (uncompressed), signing
// it with the secret key file sec on the way, and from there into a new chroot
// store, which thereby carries the signatures in its database. It returns the
// cache directory and the chroot store's root.
func (n *nixT) signedStores(p, sec, pub string) (cacheDir, root string) {
	n.t.Helper()
	cacheDir, root = n.Path("cache-"+filepath.Base(sec)), n.Path("store-"+filepath.Base(sec))
	n.Must("nix", "copy", "--to", "file://"+cacheDir+"?compression=none&secret-key="+sec, p)
	pubText, err := os.ReadFile(pub)
	if err != nil {
		n.t.Fatal(err)
	}
	n.Must("nix", "copy", "--from", "file://"+cacheDir, "--to", root, "--option", "trusted-public-keys", string(pubText), p)
	return cacheDir, root
}

// testCA is a real nixpki CA (ca.Init) and its Nix authority.
type testCA struct {
	t    *testing.T
	ca   *ca.CA
	auth *enroll.Authority
	dir  string
	root string // root.crt
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	cfg := config.Defaults()
	cfg.Name = "VerifyTest"
	cfg.DNSNames = []string{"ca.internal"}
	cfg.ExternalURL = "http://127.0.0.1:1"
	dir := filepath.Join(t.TempDir(), "ca")
	ctx := context.Background()
	if _, err := ca.Init(ctx, ca.InitOptions{Dir: dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	c, err := ca.Open(ctx, dir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testCA{t: t, ca: c, auth: enroll.NewAuthority(c), dir: dir, root: ca.CertPath(dir, ca.IssuerRoot)}
}

// certify certifies a public key for subject and writes the chain next to it;
// it returns the chain file and the serial.
func (c *testCA) certify(pubFile, subject, scope string, validity time.Duration) (string, string) {
	c.t.Helper()
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		c.t.Fatal(err)
	}
	sc, err := nixcert.ParseScope(scope)
	if err != nil {
		c.t.Fatal(err)
	}
	iss, err := c.auth.Certify(context.Background(), enroll.CertifyRequest{PublicKey: pub, Subject: subject, Targets: []string{"*"}, Scope: sc, Validity: validity, Requester: "test"})
	if err != nil {
		c.t.Fatal(err)
	}
	out := strings.TrimSuffix(pubFile, ".pub") + "-" + x509util.SerialHex(iss.Cert.SerialNumber) + ".crt"
	if err := os.WriteFile(out, iss.ChainPEM(), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return out, x509util.SerialHex(iss.Cert.SerialNumber)
}

// revoke revokes a serial and returns a file with the Nix intermediate's new CRL.
func (c *testCA) revoke(serial string) string {
	c.t.Helper()
	if _, err := c.auth.Revoke(context.Background(), serial, 1); err != nil {
		c.t.Fatal(err)
	}
	return c.crl()
}

func (c *testCA) crl() string {
	c.t.Helper()
	der, err := c.auth.CRL(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	f, err := os.CreateTemp(c.t.TempDir(), "nix-*.crl")
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(der); err != nil {
		c.t.Fatal(err)
	}
	return f.Name()
}
