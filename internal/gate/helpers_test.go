package gate

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

// testPKI is a root and a Nix-signing intermediate made with crypto/x509.
type testPKI struct {
	root, nix       *x509.Certificate
	rootKey, nixKey crypto.Signer
	serial          int64
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t testing.TB) *testPKI {
	p := &testPKI{serial: 100}
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.rootKey, p.nixKey = rk, nk
	now := time.Now()
	caTmpl := func(cn string, eku []asn1.ObjectIdentifier) *x509.Certificate {
		p.serial++
		return &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, UnknownExtKeyUsage: eku, BasicConstraintsValid: true, IsCA: true}
	}
	rt := caTmpl("Test Root", nil)
	p.root = mustCert(t, rt, rt, rk.Public(), rk)
	nt := caTmpl("Test Nix Intermediate", []asn1.ObjectIdentifier{x509util.OIDNixStoreSigning})
	p.nix = mustCert(t, nt, p.root, nk.Public(), rk)
	return p
}

// member is a Nix key and its certificate.
type member struct {
	key  signing.SecretKey
	cert *x509.Certificate
}

func (p *testPKI) member(t testing.TB, keyName, subject string, targets []string, scope nixcert.Scope, mutate func(*x509.Certificate)) member {
	t.Helper()
	k, err := signing.GenerateKey(keyName)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := nixcert.Template(nixcert.Constraints{KeyName: keyName, Subject: subject, Targets: targets, Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour)
	if mutate != nil {
		mutate(tmpl)
	}
	return member{key: k, cert: mustCert(t, tmpl, p.nix, k.Public().Key, p.nixKey)}
}

func (p *testPKI) crl(t testing.TB, number int64, thisUpdate time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	return signCRL(t, p.nix, p.nixKey, number, thisUpdate, 1, revoked) // keyCompromise
}

// signCRL is a CRL by issuer, valid a week from thisUpdate, revoking revoked for reason.
func signCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, number int64, thisUpdate time.Time, reason int, revoked []*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: thisUpdate, NextUpdate: thisUpdate.Add(7 * 24 * time.Hour)}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: thisUpdate, ReasonCode: reason})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// chainPEM is what nixpki nix push uploads: leaf, intermediate, and CRLs.
func (p *testPKI) chainPEM(m member, crls ...[]byte) []byte {
	b := x509util.ChainPEM(m.cert, p.nix)
	for _, c := range crls {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: c})...)
	}
	return b
}

// testGate is a gate in a temporary directory, served by httptest.
type testGate struct {
	*Gate
	pki *testPKI
	srv *httptest.Server
	dir string
}

func newTestGate(t testing.TB, edit func(*Config)) *testGate {
	t.Helper()
	pki := newPKI(t)
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root-in.crt")
	os.WriteFile(rootFile, x509util.ChainPEM(pki.root), 0o644)
	gdir := filepath.Join(dir, "g")
	if _, _, err := Init(InitOptions{Dir: gdir, Name: "host-a", RootFile: rootFile}); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		cfg, err := LoadConfig(gdir)
		if err != nil {
			t.Fatal(err)
		}
		edit(&cfg)
		data, _ := cfg.Marshal()
		os.WriteFile(filepath.Join(gdir, ConfigFile), data, 0o600)
	}
	g, err := Open(gdir, "", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(func() { srv.Close(); g.Close() })
	return &testGate{Gate: g, pki: pki, srv: srv, dir: gdir}
}

func (tg *testGate) do(t testing.TB, method, path string, body []byte) (int, string) {
	t.Helper()
	return tg.doHeader(t, method, path, body)
}

// doHeader is do with request headers (name, value, …).
func (tg *testGate) doHeader(t testing.TB, method, path string, body []byte, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, tg.srv.URL+path, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// enroll uploads a member's chain with a current CRL.
func (tg *testGate) enroll(t testing.TB, m member) {
	t.Helper()
	if s, b := tg.do(t, "PUT", "/nixpki/certs", tg.pki.chainPEM(m, tg.pki.crl(t, time.Now().Unix(), time.Now().Add(-time.Second)))); s != 200 {
		t.Fatalf("enroll %s: %d %s", m.key.Name, s, b)
	}
}

// makeNAR serialises a one-file store path.
func makeNAR(t testing.TB, contents string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	if err := w.WriteHeader(&nar.Entry{Path: "/", Type: nar.Regular, Size: int64(len(contents))}); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, contents)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func compress(t testing.TB, data []byte, compression string) []byte {
	t.Helper()
	var b bytes.Buffer
	switch compression {
	case "none":
		return data
	case "zstd":
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	case "xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case "bzip2":
		bz := testutil.NeedTool(t, "bzip2")
		cmd := exec.Command(bz, "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b.Bytes()
}

var hashSeq int

// storePath makes a fresh store path called name.
func storePath(name string) string {
	hashSeq++
	h := sha256.Sum256([]byte(fmt.Sprint(name, hashSeq, time.Now().UnixNano())))
	return storepath.DefaultStoreDir + "/" + base32.Encode(h[:20]) + "-" + name
}

// upload is what nix copy sends for one path: the NAR, then a narinfo signed by
// signers. mutate may alter the narinfo before signing (or after, with resign false).
type upload struct {
	path        string
	contents    string
	compression string
	refs        []string // full store paths
	signers     []member
	mutate      func(*narinfo.NarInfo)
	byNarHash   bool // named by its NarHash, as nixpki nix push names it (no FileHash)
}

func (tg *testGate) push(t testing.TB, u upload) (narStatus, niStatus int, body string) {
	t.Helper()
	pu := prepareNAR(t, u)
	if narStatus, body = tg.putNAR(t, pu); narStatus != 200 {
		return narStatus, 0, body
	}
	pu.sign(t, u) // after the NAR's upload: mutate may act on the gate in between
	niStatus, body = tg.do(t, "PUT", pu.narinfoPath, pu.narinfo)
	return narStatus, niStatus, body
}

// prepared is an upload's requests: its NAR file, then its narinfo (sign).
type prepared struct {
	narURL      string
	file        []byte
	fileHash    [32]byte
	narHash     [32]byte
	narSize     int
	byNarHash   bool
	narinfoPath string
	narinfo     []byte
}

// prepareNAR makes u's NAR file.
func prepareNAR(t testing.TB, u upload) *prepared {
	t.Helper()
	if u.compression == "" {
		u.compression = "zstd"
	}
	nar := makeNAR(t, u.contents)
	pu := &prepared{file: compress(t, nar, u.compression), narHash: sha256.Sum256(nar), narSize: len(nar), byNarHash: u.byNarHash,
		narinfoPath: "/" + storepath.HashPart(u.path) + ".narinfo"}
	pu.fileHash = sha256.Sum256(pu.file)
	pu.narURL = binarycache.NARURL(pu.fileHash, u.compression)
	if u.byNarHash {
		pu.narURL = binarycache.NARURL(pu.narHash, u.compression)
	}
	return pu
}

// sign makes u's narinfo, signed by its signers (then mutated).
func (pu *prepared) sign(t testing.TB, u upload) {
	t.Helper()
	if u.compression == "" {
		u.compression = "zstd"
	}
	fh := pu.fileHash
	ni := &narinfo.NarInfo{StorePath: u.path, URL: pu.narURL, Compression: u.compression, FileHash: &fh, FileSize: uint64(len(pu.file)),
		NarHash: pu.narHash, NarSize: uint64(pu.narSize)}
	if u.byNarHash {
		ni.FileHash, ni.FileSize = nil, 0
	}
	for _, r := range u.refs {
		ni.References = append(ni.References, r[strings.LastIndexByte(r, '/')+1:])
	}
	fp, err := ni.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range u.signers {
		ni.Sigs = append(ni.Sigs, m.key.Sign(fp))
	}
	if u.mutate != nil {
		u.mutate(ni)
	}
	if pu.narinfo, err = ni.MarshalText(); err != nil {
		t.Fatal(err)
	}
}

// putNAR uploads a prepared NAR file.
func (tg *testGate) putNAR(t testing.TB, pu *prepared) (int, string) {
	t.Helper()
	if pu.byNarHash {
		return tg.doHeader(t, "PUT", "/"+pu.narURL, pu.file, binarycache.NARNameHeader, binarycache.NARNameNarHash)
	}
	return tg.do(t, "PUT", "/"+pu.narURL, pu.file)
}

func (tg *testGate) served(t testing.TB, path string) (*narinfo.NarInfo, bool) {
	t.Helper()
	s, b := tg.do(t, "GET", "/"+storepath.HashPart(path)+".narinfo", nil)
	if s == 404 {
		return nil, false
	}
	if s != 200 {
		t.Fatalf("GET narinfo: %d %s", s, b)
	}
	ni, err := narinfo.Parse(strings.NewReader(b), storepath.DefaultStoreDir)
	if err != nil {
		t.Fatal(err)
	}
	return ni, true
}
