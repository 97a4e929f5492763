package enroll

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/x509util"
)

// Client talks to a nixpki CA's enrollment endpoints over HTTPS, trusting only the
// CA's root for the server's certificate.
type Client struct {
	BaseURL string // e.g. https://ca.internal:8443
	Root    *x509.Certificate
	HTTP    *http.Client
	// Now is the clock the client checks certificates with (default time.Now).
	Now func() time.Time
}

// NewClient makes a client whose TLS trusts root alone.
func NewClient(baseURL string, root *x509.Certificate) *Client {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		Root:    root,
		HTTP: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}},
	}
}

// Enrolled is a certificate the CA issued, already verified against the root.
type Enrolled struct {
	Chain    []*x509.Certificate // leaf, Nix intermediate
	Identity *nixcert.Identity
}

// ChainPEM renders the chain as the CA sent it.
func (e *Enrolled) ChainPEM() []byte { return x509util.ChainPEM(e.Chain...) }

// CreateCSR makes the enrollment CSR: common name = the Nix key name, signed by the
// Nix key (Ed25519). Signing DER can never be mistaken for a Nix signature, whose
// messages start with "1;".
func CreateCSR(sec signing.SecretKey) ([]byte, error) {
	if err := signing.ValidateKeyName(sec.Name); err != nil {
		return nil, err
	}
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: sec.Name}}, sec.Key)
}

func (c *Client) post(ctx context.Context, path string, req any, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		return fmt.Errorf("contacting the CA: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the CA refused: %w", errProblem(resp.Status, data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the CA's answer to %s is not valid JSON: %w", path, err)
	}
	return nil
}

// Challenge asks for a single-use challenge (for SSH enrollment).
func (c *Client) Challenge(ctx context.Context) (string, error) {
	var out ChallengeResponse
	if err := c.post(ctx, "/nix/challenge", struct{}{}, &out); err != nil {
		return "", err
	}
	return out.Challenge, nil
}

// EnrollOptions are what the member may ask for.
type EnrollOptions struct {
	Subject  string        // the subject the member expects (checked by the CA)
	Validity time.Duration // less than the default, if wanted
}

func (o EnrollOptions) json(csr []byte) EnrollJSON {
	j := EnrollJSON{CSR: csr, Subject: o.Subject}
	if o.Validity > 0 {
		j.Validity = o.Validity.String()
	}
	return j
}

// EnrollToken enrolls sec's public key with a one-time token.
func (c *Client) EnrollToken(ctx context.Context, sec signing.SecretKey, token string, o EnrollOptions) (*Enrolled, error) {
	csr, err := CreateCSR(sec)
	if err != nil {
		return nil, err
	}
	req := o.json(csr)
	req.Token = strings.TrimSpace(token)
	return c.issue(ctx, "/nix/enroll", req, sec)
}

// EnrollSSH enrolls sec's public key with an SSH user certificate (signer's public
// key must be the certificate; see LoadSSHSigner, AgentSSHSigner).
func (c *Client) EnrollSSH(ctx context.Context, sec signing.SecretKey, signer ssh.Signer, o EnrollOptions) (*Enrolled, error) {
	pub, err := ssh.ParsePublicKey(signer.PublicKey().Marshal())
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("the SSH key (%s) has no certificate", signer.PublicKey().Type())
	}
	csr, err := CreateCSR(sec)
	if err != nil {
		return nil, err
	}
	challenge, err := c.Challenge(ctx)
	if err != nil {
		return nil, err
	}
	sig, err := SignSSH(signer, challenge, csr)
	if err != nil {
		return nil, fmt.Errorf("signing with the SSH key: %w", err)
	}
	req := o.json(csr)
	req.SSHCertificate = string(ssh.MarshalAuthorizedKey(cert))
	req.SSHSignature = ssh.Marshal(sig)
	req.Challenge = challenge
	return c.issue(ctx, "/nix/enroll", req, sec)
}

// Renew renews the certificate chain for the same key.
func (c *Client) Renew(ctx context.Context, sec signing.SecretKey, chain []*x509.Certificate, o EnrollOptions) (*Enrolled, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("no certificate to renew")
	}
	csr, err := CreateCSR(sec)
	if err != nil {
		return nil, err
	}
	req := o.json(csr)
	req.Certificate = string(x509util.ChainPEM(chain...))
	return c.issue(ctx, "/nix/renew", req, sec)
}

// issue posts the request and checks what comes back: it must verify to the root,
// certify sec's key under its name, and (if asked) for the expected subject.
func (c *Client) issue(ctx context.Context, path string, req EnrollJSON, sec signing.SecretKey) (*Enrolled, error) {
	var out IssuedJSON
	if err := c.post(ctx, path, req, &out); err != nil {
		return nil, err
	}
	chain, err := nixcert.ParseChainPEM([]byte(out.Certificate))
	if err != nil {
		return nil, fmt.Errorf("the CA's certificate: %w", err)
	}
	v := nixcert.NewVerifier(c.Root)
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	id, err := v.Verify(chain[0], chain[1:], now())
	if err != nil {
		return nil, fmt.Errorf("the certificate the CA sent does not verify: %w", err)
	}
	if !id.Key.Equal(sec.Public()) {
		return nil, fmt.Errorf("the CA certified %s, not our key %s", id.Key, sec.Public())
	}
	if req.Subject != "" && id.Constraints.Subject != req.Subject {
		return nil, fmt.Errorf("the CA certified subject %q, not %q", id.Constraints.Subject, req.Subject)
	}
	return &Enrolled{Chain: chain, Identity: id}, nil
}
