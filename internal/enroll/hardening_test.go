package enroll

import (
	"context"
	"crypto/dsa"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"nixpki/internal/config"
)

// Subject alice cannot take alice-admin, a name of subject alice-admin, by any
// issuance path; alice-admin then gets its own name.
func TestKeyNamesBelongToOneSubject(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	before := e.nixCerts()
	_, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(e.key("alice-admin").Public().String()), Subject: "alice", Targets: []string{"x"}})
	e.refused(err, `it is a name of subject "alice-admin"`, before)
	if _, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", KeyName: "alice-admin", Targets: []string{"x"}}); err == nil {
		t.Error("a token for subject alice and key name alice-admin was created")
	}
	tok, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.EnrollToken(ctx, e.key("alice-admin"), tok, EnrollOptions{})
	e.refused(err, `it is a name of subject "alice-admin"`, before)
	_, err = e.client.EnrollToken(ctx, e.key("alice\u202e1"), tok, EnrollOptions{})
	e.refused(err, "U+202E", before)
	if _, err := e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(e.key("alice-admin").Public().String()), Subject: "alice-admin", Targets: []string{"x"}}); err != nil {
		t.Fatalf("alice-admin certifying its own name: %v", err)
	}
	_, err = e.auth.Certify(ctx, CertifyRequest{PublicKey: []byte(e.key("web-01").Public().String()), Subject: "web-01", Targets: []string{"x"}})
	e.refused(err, "ends in a dash and digits", before+1)
}

// SHA-1 is refused in SSH enrollment: a user certificate its CA signed with ssh-rsa,
// and a DSA user key, even when the enrollment signature itself is fine.
func TestSSHSHA1Refused(t *testing.T) {
	rsaKey, err := rsaKeyForTest()
	if err != nil {
		t.Fatal(err)
	}
	rsaCA, _ := ssh.NewSignerFromKey(rsaKey)
	e := newEnv(t, func(c *config.Config) {
		c.Nix.SSHUserCAs = append(c.Nix.SSHUserCAs, string(ssh.MarshalAuthorizedKey(rsaCA.PublicKey())))
	})
	ctx := context.Background()
	now := time.Now()
	sha512CA, _ := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA512})
	good := sshCert(t, sha512CA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	if _, err := e.client.EnrollSSH(ctx, e.key("alice-1"), good, EnrollOptions{}); err != nil {
		t.Fatalf("certificate signed with rsa-sha2-512: %v", err)
	}
	before := e.nixCerts()

	sha1CA, _ := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	sha1 := sshCert(t, sha1CA, []string{"alice"}, now.Add(-time.Hour), now.Add(time.Hour), nil)
	if f := sha1.PublicKey().(*ssh.Certificate).Signature.Format; f != ssh.KeyAlgoRSA {
		t.Fatalf("test certificate signed with %s, want ssh-rsa", f)
	}
	_, err = e.client.EnrollSSH(ctx, e.key("alice-2"), sha1, EnrollOptions{})
	e.refused(err, "signed it with ssh-rsa (SHA-1)", before)

	var dk dsa.PrivateKey
	if err := dsa.GenerateParameters(&dk.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dk, rand.Reader); err != nil {
		t.Fatal(err)
	}
	user, err := ssh.NewSignerFromKey(&dk)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: user.PublicKey(), CertType: ssh.UserCert, KeyId: "dsa", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
	if err := cert.SignCert(rand.Reader, e.sshCA); err != nil {
		t.Fatal(err)
	}
	dsaSigner, _ := ssh.NewCertSigner(cert, user)
	_, err = e.client.EnrollSSH(ctx, e.key("alice-3"), dsaSigner, EnrollOptions{})
	e.refused(err, "certifies a DSA key", before)

	cfg := e.ca.Config.Nix
	cfg.SSHUserCAs = []string{string(ssh.MarshalAuthorizedKey(user.PublicKey()))}
	if _, err := newSSHAuth(cfg); err == nil {
		t.Error("a DSA SSH user CA was accepted")
	}
}

// Token lifetimes are bounded by nix.token_max_ttl.
func TestTokenMaxTTL(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}, TTL: 8 * 24 * time.Hour}); err == nil || !strings.Contains(err.Error(), "exceeds nix.token_max_ttl 168h0m0s") {
		t.Errorf("an 8-day token: %v", err)
	}
	if _, _, err := e.auth.CreateToken(ctx, TokenRequest{Subject: "alice", Targets: []string{"x"}, TTL: 24 * time.Hour}); err != nil {
		t.Errorf("a 1-day token: %v", err)
	}
}

// nix enroll refuses an SSH private key that group or others may read, as ssh does.
func TestSSHKeyReadableByOthersRefused(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	pemBlock, err := ssh.MarshalPrivateKey(edKey(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(pemBlock), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSSHSigner(key, ""); err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Fatalf("a 0640 SSH key: %v, want a refusal naming chmod 600", err)
	}
}
