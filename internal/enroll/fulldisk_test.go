package enroll

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"nixpki/internal/nix/signing"
)

// On a full disk the CA refuses to issue, with a clear error, and leaves no
// certificate without its attempt record: the record is part of the issuance.
func TestFullDiskRefusesIssuance(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	c := openCA(t, filepath.Join(mnt, "ca"))
	a := NewAuthority(c)
	ctx := context.Background()
	certify := func(i int) error {
		k, err := signing.GenerateKey(fmt.Sprintf("alice-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Certify(ctx, CertifyRequest{PublicKey: []byte(k.Public().String()), Subject: "alice", Targets: []string{"x"}, Requester: "admin"})
		return err
	}
	if err := certify(0); err != nil {
		t.Fatal(err)
	}

	// Fill the file system.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	filler.Close()

	// Issue until the CA refuses (SQLite may first fill pages it already holds).
	var refusal error
	for i := 1; i <= 500 && refusal == nil; i++ {
		refusal = certify(i)
	}
	if refusal == nil || !strings.Contains(refusal.Error(), "could not record the issuance, so it issued nothing") {
		t.Fatalf("issuing on a full disk: %v, want a refusal saying nothing was issued", refusal)
	}
	t.Logf("refused: %v", refusal)
	// Every certificate the Nix intermediate signed has its "issued" attempt.
	certs, err := c.DB.ListNixCerts(ctx, storeFilterAll)
	if err != nil {
		t.Fatal(err)
	}
	attempts, err := c.DB.ListNixAttempts(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, at := range attempts {
		if at.Outcome == "issued" {
			recorded[at.Serial] = true
		}
	}
	all, err := c.DB.ListCerts(ctx, storeCertsNix)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(certs) {
		t.Errorf("%d certificates of the Nix intermediate, %d with issuance details", len(all), len(certs))
	}
	for _, rec := range all {
		if !recorded[rec.Serial] {
			t.Errorf("certificate %s exists without its attempt record", rec.Serial)
		}
	}
}
