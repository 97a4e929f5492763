package main

// Attacks on the gate by anyone who can reach it, with real Nix: idle uploads
// racing stock nix copy, unsigned narinfos of large content-addressed paths,
// CRLs dated ahead, derivation names dodging threshold patterns, and content
// addresses with weak hashes.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"nixpki/internal/gate"
	"nixpki/internal/keys"
	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/x509util"
)

// Two connections that send a NAR PUT's headers and six bytes of xz, then nothing,
// do not stall stock nix copy (xz, Nix's default compression) to the gate.
func TestGateIdleUploadsE2E(t *testing.T) {
	r := newGateRig(t)
	app, dep := r.build("idle-race")
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, dep); err != nil {
		t.Fatalf("alice's push of the dependency: %v\n%s", err, out)
	}
	addr := strings.TrimPrefix(r.url, "http://")
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var h [32]byte
		rand.Read(h[:])
		fmt.Fprintf(c, "PUT /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000000\r\n\r\n\xfd7zXZ\x00", binarycache.NARURL(h, "xz"), addr)
	}
	time.Sleep(300 * time.Millisecond)
	// Well within the gate's body deadline (30 s a chunk): the copy must not wait
	// for the idle uploads to be cut off.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix", "copy", "--to", r.url+"?secret-key="+r.p("alice-1.sec"), app)
	cmd.Env, cmd.Dir = r.env(), r.tmp
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("nix copy (xz) stalled behind two idle uploads:\n%s", out)
	}
	if err != nil {
		t.Fatalf("nix copy (xz) beside two idle uploads: %v\n%s", err, out)
	}
	r.mustTarget(app)
}

// An unsigned narinfo (or one signed by an unknown key) for a large
// content-addressed path is refused without the gate decompressing or hashing its
// NAR again: ten refusals take less time than the one upload of the NAR that
// decompressed and hashed it.
func TestGateUnsignedCheapE2E(t *testing.T) {
	r := newGateRig(t)
	zeros := r.p("zeros.img")
	if err := os.WriteFile(zeros, make([]byte, 192<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(r.n.must("nix-store", "--add-fixed", "sha256", zeros))
	os.Remove(zeros)
	cache := r.p("zeros-cache")
	if _, e, err := r.exec(r.env(), "nix", "copy", "--to", "file://"+cache+"?compression=zstd", path); err != nil {
		t.Fatalf("nix copy to a file cache: %v\n%s", err, e)
	}
	niText := mustRead(t, filepath.Join(cache, storepath.HashPart(path)+".narinfo"))
	ni, err := narinfo.Parse(strings.NewReader(string(niText)), storepath.DefaultStoreDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ni.CA, "fixed:sha256:") || len(ni.Sigs) != 0 {
		t.Fatalf("narinfo of %s: CA %q, %d signatures", path, ni.CA, len(ni.Sigs))
	}
	start := time.Now()
	if s, b := r.put("/"+ni.URL, mustRead(t, filepath.Join(cache, ni.URL))); s != 200 {
		t.Fatalf("NAR: %d %s", s, b)
	}
	narTook := time.Since(start)
	fp, _ := ni.Fingerprint()
	mallory, err := signing.ParseSecretKey(mustRead(t, r.p("mallory-1.sec")))
	if err != nil {
		t.Fatal(err)
	}
	signed := *ni
	signed.Sigs = []signing.Signature{mallory.Sign(fp)}
	malloryText, _ := signed.MarshalText()
	start = time.Now()
	for i := range 10 {
		body, want := niText, "carries no signature"
		if i%2 == 1 {
			body, want = malloryText, "key mallory-1: unknown key"
		}
		s, b := r.put("/"+storepath.HashPart(path)+".narinfo", body)
		if s != 403 || !strings.Contains(b, want) {
			t.Fatalf("refusal %d: %d %s", i, s, b)
		}
	}
	if took := time.Since(start); took > narTook {
		t.Errorf("ten refusals of unsigned narinfos took %s, more than the NAR's upload (%s): they decompress or hash the NAR", took, narTook)
	}
}

// A CRL dated years ahead (a CA clock error) is refused, and nixpki nix push
// reports it: it would otherwise freeze revocation for its issuer.
func TestGateFutureCRLE2E(t *testing.T) {
	r := newGateRig(t)
	password, err := keys.ReadPassword(filepath.Join(r.caDir, "secrets", "password"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.LoadSigner(filepath.Join(r.caDir, "secrets", "nix-intermediate.key"), password)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509util.ReadCertFile(filepath.Join(r.caDir, "nix-intermediate.crt"))
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(3 * 365 * 24 * time.Hour)
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1 << 40), ThisUpdate: ahead, NextUpdate: ahead.Add(7 * 24 * time.Hour)}, inter, signer)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(r.p("future.crl"), der, 0o644)
	app, _ := r.build("future-crl")
	out, err := r.push("alice-1", []string{"--crl", r.p("future.crl")}, app)
	if err == nil || !strings.Contains(out, "ahead of the gate's clock") {
		t.Fatalf("push with a CRL dated ahead: %v\n%s", err, out)
	}
	if s, b := r.put("/nixpki/crl", der); s != 400 || !strings.Contains(b, "ahead of the gate's clock") {
		t.Fatalf("CRL dated ahead: %d %s", s, b)
	}
	// The current CRL still works.
	if out, err := r.push("alice-1", []string{"--crl", r.p("nix.crl")}, app); err != nil {
		t.Fatalf("push with the current CRL: %v\n%s", err, out)
	}
}

// A derivation named SUDO_1.9 needs what *-sudo-* needs: one member's push leaves
// it pending, a second identity's admits it.
func TestGateThresholdNormalisedE2E(t *testing.T) {
	r := newGateRig(t)
	crl := []string{"--crl", r.p("nix.crl")}
	sudo, _ := r.build("SUDO_1.9")
	if out, err := r.push("alice-1", crl, sudo); err == nil || !strings.Contains(out, "pending "+sudo) || !strings.Contains(out, "pattern *-sudo-* needs 2") {
		t.Fatalf("alice's push of %s: %v\n%s", sudo, err, out)
	}
	r.mustNotTarget(sudo)
	if out, err := r.push("bob-1", crl, sudo); err != nil {
		t.Fatalf("bob's push of %s: %v\n%s", sudo, err, out)
	}
	r.mustTarget(sudo)
}

// A content-addressed-only certificate counts for fixed-output paths hashed with
// SHA-256, not for those hashed with SHA-1 or MD5 (they count as input-addressed).
func TestGateWeakCAHashE2E(t *testing.T) {
	r := newGateRig(t)
	crl := []string{"--crl", r.p("nix.crl")}
	src := r.p("src.tar")
	os.WriteFile(src, []byte(fmt.Sprintf("source %d", time.Now().UnixNano())), 0o644)
	for _, algo := range []string{"sha1", "md5"} {
		p := strings.TrimSpace(r.n.must("nix-store", "--add-fixed", algo, src))
		out, err := r.push("dave-1", crl, p)
		if err == nil || !strings.Contains(out, "uses "+algo+", which is not collision-resistant") {
			t.Fatalf("dave's push of a fixed:%s path: %v\n%s", algo, err, out)
		}
		r.mustNotTarget(p)
	}
	p := strings.TrimSpace(r.n.must("nix-store", "--add-fixed", "sha256", src))
	if out, err := r.push("dave-1", crl, p); err != nil {
		t.Fatalf("dave's push of a fixed:sha256 path: %v\n%s", err, out)
	}
	r.mustTarget(p)
}

// What anyone may ask the gate names no signer: the status of a pending path says
// how many identities it has and needs, not who. nixpki log verify checks the
// gate's database against its log: a served narinfo given another member's
// signature behind the gate's back fails, naming the path.
func TestGateStatusAndDBCheckE2E(t *testing.T) {
	r := newGateRig(t)
	crl := []string{"--crl", r.p("nix.crl")}
	sudo, dep := r.build("status-sudo-1.0")
	out, err := r.push("alice-1", crl, sudo)
	if err == nil || !strings.Contains(out, "pending "+sudo) || !strings.Contains(out, "has 1 of 2 signatures") {
		t.Fatalf("alice's push: %v\n%s", err, out)
	}
	res, err := http.Post(r.url+"/nixpki/status", "text/plain", strings.NewReader(sudo+"\n"+dep+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	wantIn(t, "status", string(body), "pending "+sudo+": has 1 of 2 signatures from distinct certified identities (pattern *-sudo-* needs 2)", "admitted "+dep)
	if strings.Contains(string(body), "alice") {
		t.Errorf("the status names a signer:\n%s", body)
	}
	wantIn(t, "log verify", run(t, false, "log", "verify", "--dir", r.gateDir), "Log OK", "Database OK: the 1 paths served agree with the log")

	// Another member's signature slipped into the served narinfo of dep.
	ni, _ := r.fileCacheNarInfo("mallory-1", dep)
	db, err := sql.Open("sqlite", filepath.Join(r.gateDir, gate.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sig := ni.Sigs[0].String()
	if _, err := db.Exec(`UPDATE paths SET served = served || 'Sig: ' || ? || char(10) WHERE store_path = ?`, sig, dep); err != nil {
		t.Fatal(err)
	}
	e := run(t, true, "log", "verify", "--dir", r.gateDir)
	wantIn(t, "log verify of a tampered database", e, "database check FAILED", dep+" is served with 2 member signatures, but the log recorded 1")
}
