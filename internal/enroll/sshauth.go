package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
)

// SSHNamespace is the SSHSIG namespace of enrollment signatures: a signature made
// for nixpki can't be replayed as a git commit or file signature, nor the reverse.
const SSHNamespace = "nix-enroll@nixpki"

// challengeTTL is how long a server challenge may be answered.
const challengeTTL = 5 * time.Minute

// SSHSignedData is what an SSH key signs to enroll: the SSHSIG signed-data blob
// (OpenSSH PROTOCOL.sshsig) of namespace SSHNamespace over the message
// "<challenge>\n<hex SHA-256 of the CSR DER>\n", with SHA-512. It binds the fresh
// server challenge to the one CSR, whose own signature proves the Nix key.
func SSHSignedData(challenge string, csrDER []byte) []byte {
	sum := sha256.Sum256(csrDER)
	msg := sha512.Sum512([]byte(challenge + "\n" + hex.EncodeToString(sum[:]) + "\n"))
	return append([]byte("SSHSIG"), ssh.Marshal(struct {
		Namespace, Reserved, HashAlg string
		Hash                         []byte
	}{SSHNamespace, "", "sha512", msg[:]})...)
}

// SignSSH signs an enrollment with an SSH signer (a key from a file or an agent).
// RSA keys sign with rsa-sha2-512, never SHA-1.
func SignSSH(signer ssh.Signer, challenge string, csrDER []byte) (*ssh.Signature, error) {
	data := SSHSignedData(challenge, csrDER)
	if as, ok := signer.(ssh.AlgorithmSigner); ok && underlyingKey(signer.PublicKey()).Type() == ssh.KeyAlgoRSA {
		return as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	}
	return signer.Sign(rand.Reader, data)
}

func underlyingKey(k ssh.PublicKey) ssh.PublicKey {
	if c, ok := k.(*ssh.Certificate); ok {
		return c.Key
	}
	return k
}

// sshAuth is the parsed SSH part of the nix configuration.
type sshAuth struct {
	cas        []ssh.PublicKey
	principals []sshPrincipal
}

type sshPrincipal struct {
	config.NixSSHPrincipal
	scope nixcert.Scope
}

func newSSHAuth(cfg config.Nix) (*sshAuth, error) {
	s := &sshAuth{}
	for i, line := range cfg.SSHUserCAs {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("nix.ssh_user_cas[%d]: not an SSH public key in authorized_keys format: %w", i, err)
		}
		if _, isCert := k.(*ssh.Certificate); isCert {
			return nil, fmt.Errorf("nix.ssh_user_cas[%d]: a certificate, not a CA's public key", i)
		}
		if k.Type() == ssh.InsecureKeyAlgoDSA {
			return nil, fmt.Errorf("nix.ssh_user_cas[%d]: a DSA key, which signs with SHA-1: use an Ed25519, ECDSA or RSA CA key", i)
		}
		s.cas = append(s.cas, k)
	}
	for i, p := range cfg.SSHPrincipals {
		where := fmt.Sprintf("nix.ssh_principals[%d] (%q)", i, p.Principal)
		if p.Principal == "" {
			return nil, fmt.Errorf("%s: principal is empty", where)
		}
		if err := nixcert.CheckIssuableSubject(p.Subject); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, err := nixcert.ParseTargets(p.Targets); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		sc := p.Scope
		if sc == "" {
			sc = nixcert.ScopeAny
		}
		scope, err := nixcert.ParseScope(sc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		s.principals = append(s.principals, sshPrincipal{NixSSHPrincipal: p, scope: scope})
	}
	if len(s.principals) > 0 && len(s.cas) == 0 {
		return nil, errors.New("nix.ssh_principals is set but nix.ssh_user_cas is empty: add the SSH user CA's public key")
	}
	return s, nil
}

func (s *sshAuth) isCA(k ssh.PublicKey) bool {
	m := k.Marshal()
	return slices.ContainsFunc(s.cas, func(c ssh.PublicKey) bool { return bytes.Equal(c.Marshal(), m) })
}

// describeSSHCert names an SSH certificate for messages and records.
func describeSSHCert(c *ssh.Certificate) string {
	return fmt.Sprintf("key ID %q serial %d from CA %s", clip(c.KeyId, 64), c.Serial, ssh.FingerprintSHA256(c.SignatureKey))
}

// check authenticates an enrollment by SSH certificate and returns the mapping it
// grants. Each failure names its reason.
func (s *sshAuth) check(r EnrollRequest, now time.Time) (*sshPrincipal, *ssh.Certificate, error) {
	if len(r.SSHCertificate) == 0 || len(r.SSHSignature) == 0 || r.Challenge == "" {
		return nil, nil, badRequest("SSH enrollment needs the SSH certificate, a signature and the challenge")
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(r.SSHCertificate)
	if err != nil {
		return nil, nil, badRequest("malformed SSH certificate: %v", err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, nil, forbidden("an SSH public key (%s) is not an SSH certificate: have it signed by the team's SSH user CA", k.Type())
	}
	if cert.CertType != ssh.UserCert {
		return nil, cert, forbidden("SSH certificate %s is a host certificate, not a user certificate", describeSSHCert(cert))
	}
	if len(s.cas) == 0 {
		return nil, cert, forbidden("SSH enrollment is not configured on this CA (nix.ssh_user_cas is empty)")
	}
	if !s.isCA(cert.SignatureKey) {
		return nil, cert, forbidden("SSH certificate %s is signed by an unknown CA: this CA trusts only %s", describeSSHCert(cert), s.caList())
	}
	if err := refuseSHA1(cert); err != nil {
		return nil, cert, forbidden("SSH certificate %s: %v", describeSSHCert(cert), err)
	}
	unix := now.Unix()
	if cert.ValidBefore != ssh.CertTimeInfinity && (int64(cert.ValidBefore) < 0 || unix >= int64(cert.ValidBefore)) {
		return nil, cert, forbidden("SSH certificate %s expired at %s", describeSSHCert(cert), time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
	if int64(cert.ValidAfter) < 0 || unix < int64(cert.ValidAfter) {
		return nil, cert, forbidden("SSH certificate %s is not valid before %s", describeSSHCert(cert), time.Unix(int64(cert.ValidAfter), 0).UTC().Format(time.RFC3339))
	}
	var matches []*sshPrincipal
	for i := range s.principals {
		p := &s.principals[i]
		if slices.Contains(cert.ValidPrincipals, p.Principal) && (r.Subject == "" || r.Subject == p.Subject) {
			matches = append(matches, p)
		}
	}
	switch {
	case len(cert.ValidPrincipals) == 0:
		return nil, cert, forbidden("SSH certificate %s names no principals, so it maps to no Nix subject", describeSSHCert(cert))
	case len(matches) == 0 && r.Subject != "":
		return nil, cert, forbidden("none of the SSH certificate's principals (%s) is mapped to subject %q in nix.ssh_principals", clip(strings.Join(cert.ValidPrincipals, ", "), 256), clip(r.Subject, nixcert.MaxSubjectLen))
	case len(matches) == 0:
		return nil, cert, forbidden("none of the SSH certificate's principals (%s) is mapped to a Nix subject in nix.ssh_principals", clip(strings.Join(cert.ValidPrincipals, ", "), 256))
	}
	subjects := map[string]bool{}
	for _, m := range matches {
		subjects[m.Subject] = true
	}
	if len(subjects) > 1 {
		var names []string
		for n := range subjects {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, cert, forbidden("the SSH certificate's principals map to several subjects (%s): choose one with --subject", strings.Join(names, ", "))
	}
	m := matches[0]
	checker := &ssh.CertChecker{
		IsUserAuthority:          s.isCA,
		Clock:                    func() time.Time { return now },
		SupportedCriticalOptions: []string{"source-address"},
	}
	if err := checker.CheckCert(m.Principal, cert); err != nil {
		return nil, cert, forbidden("SSH certificate %s refused: %v", describeSSHCert(cert), strings.TrimPrefix(err.Error(), "ssh: "))
	}
	if err := checkSourceAddress(cert, r.Remote); err != nil {
		return nil, cert, forbidden("SSH certificate %s: %v", describeSSHCert(cert), err)
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(r.SSHSignature, sig); err != nil {
		return nil, cert, badRequest("malformed SSH signature: %v", err)
	}
	if sig.Format == ssh.KeyAlgoRSA {
		return nil, cert, forbidden("SSH signatures with SHA-1 (ssh-rsa) are refused: sign with rsa-sha2-512")
	}
	if err := cert.Key.Verify(SSHSignedData(r.Challenge, r.CSR), sig); err != nil {
		return nil, cert, forbidden("the SSH signature does not verify with the certificate's key over this challenge and CSR: %v", err)
	}
	return m, cert, nil
}

// refuseSHA1 refuses what would rest on SHA-1: a CA signature made with ssh-rsa,
// and a DSA user key (DSA signs only with SHA-1). The enrollment signature itself is
// checked where it is verified.
func refuseSHA1(cert *ssh.Certificate) error {
	if cert.Signature != nil && cert.Signature.Format == ssh.KeyAlgoRSA {
		return errors.New("its CA signed it with ssh-rsa (SHA-1), which is refused: have the CA sign with rsa-sha2-512 (ssh-keygen -s ca -t rsa-sha2-512)")
	}
	if cert.Key.Type() == ssh.InsecureKeyAlgoDSA {
		return errors.New("it certifies a DSA key, which signs with SHA-1 and is refused: use an Ed25519, ECDSA or RSA key")
	}
	return nil
}

// sshSigners names what signed an SSH enrollment, for the one-person-one-signer
// rule: the SSH key, and the key ID its CA gave (hashed: key IDs are unbounded).
func sshSigners(cert *ssh.Certificate) []string {
	out := []string{"SSH key " + ssh.FingerprintSHA256(cert.Key)}
	if cert.KeyId != "" {
		h := sha256.Sum256([]byte(cert.KeyId))
		out = append(out, fmt.Sprintf("SSH key ID %q of CA %s (%x)", clip(cert.KeyId, 64), ssh.FingerprintSHA256(cert.SignatureKey), h[:8]))
	}
	return out
}

func (s *sshAuth) caList() string {
	var out []string
	for _, c := range s.cas {
		out = append(out, ssh.FingerprintSHA256(c))
	}
	return strings.Join(out, ", ")
}

// checkSourceAddress enforces the source-address critical option against the
// client's address, as sshd does.
func checkSourceAddress(cert *ssh.Certificate, remote string) error {
	list, ok := cert.CriticalOptions["source-address"]
	if !ok {
		return nil
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("source-address restricts where it may be used, and the client address %q is unknown", remote)
	}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(addr.Unmap()) {
			return nil
		}
		if a, err := netip.ParseAddr(s); err == nil && a == addr.Unmap() {
			return nil
		}
	}
	return fmt.Errorf("source-address %s does not include the client address %s", list, addr)
}

// NewChallenge makes a single-use challenge for SSH enrollment.
func (a *Authority) NewChallenge(ctx context.Context) (string, time.Time, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, err
	}
	v := base64.RawURLEncoding.EncodeToString(b[:])
	now := a.now()
	exp := now.Add(challengeTTL).Truncate(time.Second)
	return v, exp, a.Store.PutNixChallenge(ctx, v, exp, now)
}

// EnrollSSH issues a certificate for the CSR's key to the holder of an SSH user
// certificate from a configured SSH CA, whose principal nix.ssh_principals maps to a
// subject, targets and scope. The SSH key signs the server's challenge and the CSR.
func (a *Authority) EnrollSSH(ctx context.Context, r EnrollRequest) (iss *ca.Issued, err error) {
	// The attempt keeps what the request says only once its SSH certificate and
	// signature are authenticated.
	att := &store.NixAttempt{Method: MethodSSH, Remote: r.Remote}
	defer func() { a.record(ctx, att, iss, err) }()
	pub, err := parseCSR(r.CSR)
	if err != nil {
		return nil, err
	}
	if a.sshErr != nil {
		return nil, refused(503, "SSH enrollment is disabled by a configuration error on the CA; the administrator has it in the server log")
	}
	now := a.now()
	m, cert, err := a.ssh.check(r, now)
	if err != nil {
		return nil, err
	}
	att.SSHIdentity, att.Subject = describeSSHCert(cert), m.Subject
	att.KeyName, att.KeyFingerprint = pub.Name, pub.String()
	// The challenge is spent only by a request that passed every other check, so a
	// mistyped request does not cost the member a round trip; replay is stopped all
	// the same.
	if err := a.Store.ConsumeNixChallenge(ctx, r.Challenge, now); errors.Is(err, store.ErrNotFound) {
		return nil, forbidden("unknown, used or expired challenge: ask for a new one (POST /nix/challenge)")
	} else if err != nil {
		return nil, err
	}
	return a.issue(ctx, issueRequest{
		key: pub, cons: nixcert.Constraints{Subject: m.Subject, Targets: m.Targets, Scope: m.scope},
		validity: r.Validity, method: MethodSSH, authMethod: MethodSSH, authAt: now,
		att: att, signers: sshSigners(cert), multiSubject: m.MultiSubject,
	})
}

// LoadSSHSigner reads an SSH private key file (unencrypted; use the agent for
// encrypted keys) and its certificate, by default the file next to it named
// "<key>-cert.pub" as ssh-keygen -s writes it.
func LoadSSHSigner(keyPath, certPath string) (ssh.Signer, error) {
	// As ssh does, a private key that group or others may read is refused.
	data, err := keys.ReadPrivateFile(keyPath)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("%s is encrypted: load it into ssh-agent (ssh-add %s) and use --ssh-agent", keyPath, keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if certPath == "" {
		certPath = strings.TrimSuffix(keyPath, ".pub") + "-cert.pub"
	}
	cert, err := readSSHCert(certPath)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(cert.Key.Marshal(), signer.PublicKey().Marshal()) {
		return nil, fmt.Errorf("%s certifies another key than %s", certPath, keyPath)
	}
	return ssh.NewCertSigner(cert, signer)
}

func readSSHCert(path string) (*ssh.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SSH certificate: %w", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cert, ok := k.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s holds a public key, not an SSH certificate", path)
	}
	return cert, nil
}

// AgentSSHSigner finds a user certificate in the ssh-agent at $SSH_AUTH_SOCK: the
// one in certPath if given, else the first user certificate the agent holds. The
// returned closer closes the agent connection.
func AgentSSHSigner(certPath string) (ssh.Signer, func() error, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, errors.New("no ssh-agent: SSH_AUTH_SOCK is not set")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh-agent at %s: %w", sock, err)
	}
	client := agent.NewClient(conn)
	signers, err := client.Signers()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("ssh-agent: %w", err)
	}
	var want *ssh.Certificate
	if certPath != "" {
		if want, err = readSSHCert(certPath); err != nil {
			conn.Close()
			return nil, nil, err
		}
	}
	for _, s := range signers {
		// The agent's keys are *agent.Key: parse them to tell certificates.
		pub, err := ssh.ParsePublicKey(s.PublicKey().Marshal())
		if err != nil {
			continue
		}
		c, ok := pub.(*ssh.Certificate)
		if !ok {
			if want != nil && bytes.Equal(pub.Marshal(), want.Key.Marshal()) {
				// The agent has the key without the certificate: pair them.
				cs, err := ssh.NewCertSigner(want, s)
				if err != nil {
					conn.Close()
					return nil, nil, err
				}
				return cs, conn.Close, nil
			}
			continue
		}
		if c.CertType == ssh.UserCert && (want == nil || bytes.Equal(c.Marshal(), want.Marshal())) {
			return &agentCertSigner{Signer: s, cert: c}, conn.Close, nil
		}
	}
	conn.Close()
	if want != nil {
		return nil, nil, fmt.Errorf("the ssh-agent does not hold the key of %s: ssh-add it", certPath)
	}
	return nil, nil, errors.New("the ssh-agent holds no SSH user certificate: ssh-add a key whose -cert.pub is next to it, or give --ssh-cert")
}

// agentCertSigner is an ssh-agent signer for a certificate entry, whose public key
// is the parsed certificate.
type agentCertSigner struct {
	ssh.Signer
	cert *ssh.Certificate
}

func (s *agentCertSigner) PublicKey() ssh.PublicKey { return s.cert }

func (s *agentCertSigner) SignWithAlgorithm(r io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	as, ok := s.Signer.(ssh.AlgorithmSigner)
	if !ok {
		return nil, fmt.Errorf("the ssh-agent cannot sign with %s", algorithm)
	}
	return as.SignWithAlgorithm(r, data, algorithm)
}
