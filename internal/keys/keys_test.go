package keys

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/testutil"
)

func TestEncryptDecryptEveryType(t *testing.T) {
	for _, kt := range Types {
		k, err := Generate(kt)
		if err != nil {
			t.Fatal(err)
		}
		data, err := EncryptPEM(k, []byte("pw"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("BEGIN PRIVATE"+" KEY")) {
			t.Fatal("unencrypted output")
		}
		k2, err := DecryptPEM(data, []byte("pw"), "k")
		if err != nil {
			t.Fatal(err)
		}
		if TypeOf(k2.Public()) != kt {
			t.Fatalf("%s came back as %s", kt, TypeOf(k2.Public()))
		}
		if _, err := DecryptPEM(data, []byte("wrong"), "k"); err == nil || !strings.Contains(err.Error(), "wrong password") {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if _, err := EncryptPEM(nil, nil); err == nil {
		t.Fatal("encrypted without a password")
	}
}

// TestOpenSSLReadsKeys checks keys at rest are PKCS#8 that `openssl pkey` reads with
// the password, and only with it.
func TestOpenSSLReadsKeys(t *testing.T) {
	ossl := testutil.NeedTool(t, "openssl")
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	for _, kt := range Types {
		k, _ := Generate(kt)
		p := filepath.Join(dir, string(kt)+".key")
		if err := WriteEncrypted(p, k, []byte("s3cret")); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode().Perm())
		}
		if out, err := exec.Command(ossl, "pkey", "-in", p, "-passin", "file:"+pw, "-noout").CombinedOutput(); err != nil {
			t.Fatalf("%s: openssl pkey: %v\n%s", kt, err, out)
		}
		if err := WriteEncrypted(p, k, []byte("x")); err == nil {
			t.Fatal("overwrote an existing key")
		}
	}
}

func TestPermissionsAndPasswords(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	os.WriteFile(p, []byte("pw\n"), 0o644)
	if _, err := ReadPassword(p); err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) {
		t.Fatalf("loose password file: %v", err)
	}
	os.Chmod(p, 0o600)
	if b, err := ReadPassword(p); err != nil || string(b) != "pw" {
		t.Fatalf("ReadPassword = %q, %v", b, err)
	}
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadPassword(p); err == nil {
		t.Fatal("empty password accepted")
	}
	if _, err := ParseType("dsa"); err == nil || !strings.Contains(err.Error(), "p256, p384, ed25519, rsa3072") {
		t.Fatalf("ParseType: %v", err)
	}
}

func FuzzDecryptPEM(f *testing.F) {
	k, _ := Generate(P256)
	good, _ := EncryptPEM(k, []byte("pw"))
	f.Add(good, []byte("pw"))
	f.Add(good[:len(good)/2], []byte("pw"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}}), []byte("pw"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), []byte("pw"))
	f.Fuzz(func(t *testing.T, data, pw []byte) {
		s, err := DecryptPEM(data, pw, "fuzz")
		if err == nil && s == nil {
			t.Fatal("nil key without error")
		}
	})
}
