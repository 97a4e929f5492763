package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nixpki/internal/nix/signing"
)

// nix enroll, nix renew and nix push read the member's Nix secret key through
// readSecretKey, which refuses it while others may read it, as ssh does.
func TestSecretKeyReadableByOthersRefused(t *testing.T) {
	k, err := signing.GenerateKey("alice-1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alice.sec")
	if err := os.WriteFile(path, []byte(k.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecretKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("a 0644 secret key: %v, want a refusal naming chmod 600", err)
	}
	os.Chmod(path, 0o600)
	if got, err := readSecretKey(path); err != nil || !got.Public().Equal(k.Public()) {
		t.Fatalf("a 0600 secret key: %v", err)
	}
}
