package gate

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
)

// A narinfo none of whose signatures can count is refused before the gate reads,
// decompresses or hashes its NAR again: unsigned, signed by an unknown key, or by a
// certificate that cannot sign now. One whose signature can count has its content
// address checked (one decompression).
func TestUnsignedRefusedBeforeDecompression(t *testing.T) {
	tg := newTestGate(t, nil)
	dave := tg.pki.member(t, "dave-1", "dave", []string{"host-a"}, nixcert.Scope{ContentAddressedOnly: true}, nil)
	tg.enroll(t, dave)
	mallory := tg.pki.member(t, "mallory-1", "mallory", []string{"host-a"}, scopeAny, nil) // never uploaded
	expired := tg.pki.member(t, "eve-1", "eve", []string{"host-a"}, scopeAny, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	})
	if s, b := tg.do(t, "PUT", "/nixpki/certs", tg.pki.chainPEM(expired)); s != 403 {
		t.Fatalf("expired certificate: %d %s", s, b)
	}
	zeros := string(make([]byte, 4<<20))
	path, setCA := caPath(t, "zeros.tar", zeros)
	u := upload{path: path, contents: zeros, mutate: setCA}
	pu := prepareNAR(t, u)
	if s, b := tg.putNAR(t, pu); s != 200 {
		t.Fatalf("NAR: %d %s", s, b)
	}
	for _, c := range []struct {
		name    string
		signers []member
		want    string
	}{
		{"unsigned", nil, "carries no signature"},
		{"unknown key", []member{mallory}, "key mallory-1: unknown key"},
		{"expired certificate", []member{expired}, "expired"},
	} {
		u.signers = c.signers
		pu.sign(t, u)
		before := decodes.Load()
		for range 5 {
			if s, b := tg.do(t, "PUT", pu.narinfoPath, pu.narinfo); s != 403 || !strings.Contains(b, c.want) {
				t.Fatalf("%s: %d %s", c.name, s, b)
			}
		}
		if n := decodes.Load() - before; n != 0 {
			t.Errorf("%s: 5 refusals decompressed the NAR %d times, want 0", c.name, n)
		}
	}
	u.signers = []member{dave}
	pu.sign(t, u)
	before := decodes.Load()
	if s, b := tg.do(t, "PUT", pu.narinfoPath, pu.narinfo); s != 200 {
		t.Fatalf("signed by dave: %d %s", s, b)
	}
	if n := decodes.Load() - before; n != 1 {
		t.Errorf("an admission of a flat content-addressed path decompressed its NAR %d times, want 1", n)
	}
	// A replay of the admitted path without a signature that can count: the answer
	// is the record's, at no cost.
	u.signers = nil
	pu.sign(t, u)
	before = decodes.Load()
	if s, b := tg.do(t, "PUT", pu.narinfoPath, pu.narinfo); s != 200 || !strings.Contains(b, "already admitted") {
		t.Fatalf("unsigned replay of an admitted path: %d %s", s, b)
	}
	if n := decodes.Load() - before; n != 0 {
		t.Errorf("an unsigned replay decompressed the NAR %d times", n)
	}
}

// A staged NAR expires by its first receipt: neither asking for it (HEAD, as
// uploaders do) nor sending it again refreshes its age.
func TestStagingExpiresByFirstReceipt(t *testing.T) {
	tg := newTestGate(t, nil)
	file := makeNAR(t, "staged")
	u := "/" + binarycache.NARURL(sha256.Sum256(file), "none")
	start := time.Now()
	at := start
	tg.Now = func() time.Time { return at }
	if s, b := tg.do(t, "PUT", u, file); s != 200 {
		t.Fatalf("NAR: %d %s", s, b)
	}
	for i := range 6 {
		at = start.Add(time.Duration(i+1) * 15 * time.Minute)
		if s, _ := tg.do(t, "HEAD", u, nil); s != 200 {
			t.Fatalf("HEAD after %s: %d", at.Sub(start), s)
		}
		if s, b := tg.do(t, "PUT", u, file); s != 200 {
			t.Fatalf("PUT again after %s: %d %s", at.Sub(start), s, b)
		}
		if err := tg.Expire(t.Context()); err != nil {
			t.Fatal(err)
		}
		if at.Sub(start) > tg.Cfg.StagingMaxAge.D() {
			break
		}
	}
	if s, _ := tg.do(t, "HEAD", u, nil); s != 404 {
		t.Fatalf("HEAD of a NAR staged %s ago (staging_max_age %s), asked for and sent again every 15 minutes: %d, want 404",
			at.Sub(start), tg.Cfg.StagingMaxAge.D(), s)
	}
}

// A CRL dated ahead of the gate's clock is refused (it would stay the newest, so no
// later CRL replaced it and max_crl_age never tripped); a CRL with a higher number
// that cannot replace the held one is a 4xx the pusher sees, not a 200.
func TestCRLFromTheFutureRefused(t *testing.T) {
	tg := newTestGate(t, nil)
	p := tg.pki
	alice := p.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	now := time.Now()
	if s, b := tg.do(t, "PUT", "/nixpki/certs", p.chainPEM(alice, p.crl(t, 10, now.Add(-time.Hour)))); s != 200 {
		t.Fatalf("enroll: %d %s", s, b)
	}
	future := p.crl(t, 11, now.Add(3*365*24*time.Hour))
	if s, b := tg.do(t, "PUT", "/nixpki/crl", future); s != 400 || !strings.Contains(b, "ahead of the gate's clock") {
		t.Fatalf("CRL dated three years ahead: %d %s", s, b)
	}
	if s, b := tg.do(t, "PUT", "/nixpki/certs", p.chainPEM(alice, future)); s != 400 || !strings.Contains(b, "ahead of the gate's clock") {
		t.Fatalf("CRL dated ahead in a certificate upload: %d %s", s, b)
	}
	// A later CRL revoking alice still takes effect.
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, 12, now, alice.cert)); s != 200 || !strings.Contains(b, "accepted (1 revoked)") {
		t.Fatalf("next CRL: %d %s", s, b)
	}
	// A higher number dated before the held CRL cannot replace it: 409, not 200.
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, 13, now.Add(-2*time.Hour))); s != 409 || !strings.Contains(b, "before the CRL number 12 held") {
		t.Fatalf("higher number, older date: %d %s", s, b)
	}
	// The same CRL again is still fine (every push uploads it).
	if s, b := tg.do(t, "PUT", "/nixpki/crl", p.crl(t, 12, now, alice.cert)); s != 200 || !strings.Contains(b, "not newer") {
		t.Fatalf("same number again: %d %s", s, b)
	}
}

// Threshold patterns match normalised names: any case, with '.', '_' and '+' read as
// '-', so a member cannot dodge "*-sudo-*" by naming a derivation SUDO-1.9,
// sudo_1.9 or Sudo.1.9.
func TestThresholdNamesNormalised(t *testing.T) {
	cfg := DefaultConfig("host-a")
	cfg.Thresholds = []Threshold{{Pattern: "*-sudo-*", SigsNeeded: 2}, {Pattern: "*-nixos-system-*", SigsNeeded: 3}}
	for name, want := range map[string]int{
		"sudo": 2, "sudo-1.9.15": 2, "SUDO-1.9": 2, "sudo_1.9": 2, "Sudo.1.9": 2, "sudo+1.9": 2, "SuDo": 2,
		"nixos-system-host-24.05": 3, "NixOS_System.host": 3,
		"libsudo-1.0": 1, "sudoku-1.0": 1, "pseudo-1.0": 1,
	} {
		if n, rule := cfg.SigsNeededFor(storePath(name)); n != want {
			t.Errorf("%s needs %d (%s), want %d", name, n, rule, want)
		}
	}
	// Over HTTP: one signature does not admit SUDO_1.9.
	tg := newTestGate(t, func(c *Config) { c.Thresholds = cfg.Thresholds })
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	if _, s, b := tg.push(t, upload{path: storePath("SUDO_1.9"), contents: "#!/bin/sh", signers: []member{alice}}); s != 403 || !strings.Contains(b, "pattern *-sudo-* needs 2") {
		t.Fatalf("SUDO_1.9 signed once: %d %s", s, b)
	}
}

// idleUpload opens a connection to addr that sends a NAR PUT's headers and the first
// six bytes of an xz file, then nothing; it returns the connection.
func idleUpload(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var h [32]byte
	rand.Read(h[:])
	fmt.Fprintf(c, "PUT /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n%s", binarycache.NARURL(h, "xz"), addr, xzMagic)
	return c
}

// Uploads that send a few bytes and stop hold no decode slot: more of them than
// there are slots keep no other upload, of any compression, from being decoded; and
// each is cut off (408) once a chunk of its body is overdue.
func TestIdleUploadsHoldNoSlot(t *testing.T) {
	tg := newTestGate(t, nil)
	tg.BodyTimeout = 3 * time.Second
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	addr := strings.TrimPrefix(tg.srv.URL, "http://")
	var idle []net.Conn
	for range cap(decodeSlots) + 2 {
		idle = append(idle, idleUpload(t, addr))
	}
	time.Sleep(200 * time.Millisecond) // the idle uploads reach their handlers
	done := make(chan string, 1)
	go func() {
		var out []string
		for _, c := range []string{"xz", "zstd", "bzip2", "none"} {
			_, s, b := tg.push(t, upload{path: storePath("app-" + c), contents: "app " + c, compression: c, signers: []member{alice}})
			out = append(out, fmt.Sprintf("%s: %d %s", c, s, b))
		}
		done <- strings.Join(out, "\n")
	}()
	select {
	case got := <-done:
		if strings.Count(got, ": 200 admitted") != 4 {
			t.Fatalf("uploads beside idle ones:\n%s", got)
		}
	case <-time.After(tg.BodyTimeout * 2 / 3):
		t.Fatalf("uploads stalled behind %d idle uploads", len(idle))
	}
	for i, c := range idle {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle upload %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "stalled") {
			t.Errorf("idle upload %d: %s %s", i, res.Status, b)
		}
	}
}

// The database must agree with the log: every served path has its admission entry
// with the same NarHash and signers. A row edited behind the gate's back (another
// signature added to the served narinfo, another NarHash, a path never admitted) is
// reported.
func TestCheckDBAgainstLog(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	mallory := tg.pki.member(t, "mallory-1", "mallory", []string{"host-a"}, scopeAny, nil)
	tg.enroll(t, alice)
	a, b := storePath("a"), storePath("b")
	for _, p := range []string{a, b} {
		if _, s, body := tg.push(t, upload{path: p, contents: p, signers: []member{alice}}); s != 200 {
			t.Fatalf("push %s: %d %s", p, s, body)
		}
	}
	check := func() error {
		v, err := VerifyLog(tg.dir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = CheckDB(tg.dir, v)
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("untouched gate: %v", err)
	}
	ctx := t.Context()
	cands, err := tg.db.candidates(ctx, storepath.HashPart(a))
	if err != nil || len(cands) != 1 {
		t.Fatal(cands, err)
	}
	rec := cands[0]
	ni, _ := narinfo.Parse(strings.NewReader(rec.Served), storepath.DefaultStoreDir)
	fp, _ := ni.Fingerprint()
	ni.Sigs = append(ni.Sigs, mallory.key.Sign(fp))
	text, _ := ni.MarshalText()
	rec.Served = string(text)
	if err := tg.db.putPath(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil || !strings.Contains(err.Error(), a+" is served with 2 member signatures, but the log recorded 1") {
		t.Fatalf("a served narinfo with a signature the log lacks: %v", err)
	}
	forged := rec
	forged.Hash, forged.StorePath = storepath.HashPart(storePath("c")), storePath("c")
	if err := tg.db.putPath(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil || !strings.Contains(err.Error(), "the log has no admission of it") {
		t.Fatalf("a served path the log never admitted: %v", err)
	}
}
