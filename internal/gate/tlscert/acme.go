// Package tlscert keeps the gate's HTTPS certificate: from PEM files, re-read when
// they change (Files), or obtained and renewed from an ACME directory with the
// TLS-ALPN-01 challenge on the gate's own listener (ACME).
package tlscert

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"nixpki/internal/keys"
	"nixpki/internal/x509util"
)

// ACMEConfig says where and how the gate's certificate is obtained.
type ACMEConfig struct {
	Directory string   // the ACME directory URL (nixpki serve's /acme/<provisioner>/directory)
	Names     []string // DNS names or IP addresses the certificate is for
	Email     string   // the account's contact, if any
	// Root is trusted for the directory's HTTPS, besides the system's roots.
	Root *x509.Certificate
	// CacheDir keeps the account key, the certificate and its key (the keys
	// encrypted with the password read from PasswordFile).
	CacheDir, PasswordFile string
	Log                    *slog.Logger
}

// ACME obtains and renews a certificate from an ACME directory, answering
// TLS-ALPN-01 challenges on the listener whose tls.Config uses GetCertificate.
type ACME struct {
	cfg    ACMEConfig
	client *acme.Client

	mu         sync.Mutex
	cert       *tls.Certificate
	leaf       *x509.Certificate
	challenges map[string]*tls.Certificate
}

// NextProtos are the ALPN protocols a listener serving ACME's challenges offers.
var NextProtos = []string{"http/1.1", acme.ALPNProto}

// NewACME prepares the account (its key made and kept on first use) and loads the
// certificate kept from an earlier run, if any. Run obtains one.
func NewACME(cfg ACMEConfig) (*ACME, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if cfg.Root != nil {
		pool.AddCert(cfg.Root)
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	a := &ACME{cfg: cfg, challenges: map[string]*tls.Certificate{}}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, err
	}
	password, err := keys.ReadPassword(cfg.PasswordFile)
	if err != nil {
		return nil, err
	}
	accountKey, err := a.loadOrMakeKey(filepath.Join(cfg.CacheDir, "account.key"), password)
	if err != nil {
		return nil, err
	}
	a.client = &acme.Client{Key: accountKey, DirectoryURL: cfg.Directory, HTTPClient: hc, UserAgent: "nixpki-gate"}
	if c, err := a.load(password); err == nil {
		a.setCert(c)
	}
	return a, nil
}

func (a *ACME) loadOrMakeKey(path string, password []byte) (crypto.Signer, error) {
	if _, err := os.Stat(path); err == nil {
		return keys.LoadSigner(path, password)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, keys.WriteEncrypted(path, k, password)
}

func (a *ACME) load(password []byte) (*tls.Certificate, error) {
	dir := a.cfg.CacheDir
	chain, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return nil, err
	}
	certs, err := x509util.ParseCertsPEM(chain)
	if err != nil {
		return nil, err
	}
	key, err := keys.LoadSigner(filepath.Join(dir, "cert.key"), password)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, x := range certs {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

func (a *ACME) setCert(c *tls.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cert, a.leaf = c, c.Leaf
}

// GetCertificate answers challenge handshakes (ALPN acme-tls/1) with the challenge
// certificate and others with the obtained certificate.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Contains(hello.SupportedProtos, acme.ALPNProto) {
		if c := a.challenges[strings.ToLower(hello.ServerName)]; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("no ACME challenge pending for %q", hello.ServerName)
	}
	if a.cert == nil {
		return nil, errors.New("the gate's certificate has not been obtained from the ACME directory yet")
	}
	return a.cert, nil
}

// needsRenewal reports whether the certificate is missing or in the last third of
// its life.
func (a *ACME) needsRenewal(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leaf == nil {
		return true
	}
	life := a.leaf.NotAfter.Sub(a.leaf.NotBefore)
	return now.After(a.leaf.NotAfter.Add(-life / 3))
}

// Run obtains the certificate when needed, checking every minute until ctx is done.
func (a *ACME) Run(ctx context.Context) {
	for {
		if a.needsRenewal(time.Now()) {
			octx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			err := a.obtain(octx)
			cancel()
			if err != nil {
				a.cfg.Log.Error("ACME: obtaining the gate's certificate", "directory", a.cfg.Directory, "err", err)
			} else {
				a.cfg.Log.Info("ACME: obtained the gate's certificate", "names", a.cfg.Names)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

func identifiers(names []string) []acme.AuthzID {
	var ids []acme.AuthzID
	for _, n := range names {
		if net.ParseIP(n) != nil {
			ids = append(ids, acme.AuthzID{Type: "ip", Value: n})
		} else {
			ids = append(ids, acme.AuthzID{Type: "dns", Value: n})
		}
	}
	return ids
}

func (a *ACME) obtain(ctx context.Context) error {
	acct := &acme.Account{}
	if a.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + a.cfg.Email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("registering: %w", err)
	}
	order, err := a.client.AuthorizeOrder(ctx, identifiers(a.cfg.Names))
	if err != nil {
		return fmt.Errorf("ordering: %w", err)
	}
	for _, u := range order.AuthzURLs {
		z, err := a.client.GetAuthorization(ctx, u)
		if err != nil {
			return err
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == "tls-alpn-01" {
				chal = c
			}
		}
		if chal == nil {
			return fmt.Errorf("the directory offers no tls-alpn-01 challenge for %s", z.Identifier.Value)
		}
		cert, err := a.client.TLSALPN01ChallengeCert(chal.Token, z.Identifier.Value)
		if err != nil {
			return err
		}
		name := strings.ToLower(z.Identifier.Value)
		a.mu.Lock()
		a.challenges[name] = &cert
		a.mu.Unlock()
		_, err = a.client.Accept(ctx, chal)
		if err == nil {
			_, err = a.client.WaitAuthorization(ctx, z.URI)
		}
		a.mu.Lock()
		delete(a.challenges, name)
		a.mu.Unlock()
		if err != nil {
			return fmt.Errorf("tls-alpn-01 for %s: %w (the CA validates by connecting to port 443 of %s, or to the port nixpki serve --acme-tls-port names: the gate must answer there, by listening on :443 or behind a forward of that port)", z.Identifier.Value, err, z.Identifier.Value)
		}
	}
	if order, err = a.client.WaitOrder(ctx, order.URI); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.cfg.Names[0]}}
	for _, n := range a.cfg.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	ders, _, err := a.client.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return fmt.Errorf("finalizing: %w", err)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return err
	}
	c := &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}
	if err := a.store(c, key); err != nil {
		return err
	}
	a.setCert(c)
	return nil
}

// store keeps the certificate and its key (encrypted) for the next start.
func (a *ACME) store(c *tls.Certificate, key crypto.Signer) error {
	dir := a.cfg.CacheDir
	password, err := keys.ReadPassword(a.cfg.PasswordFile)
	if err != nil {
		return err
	}
	keyPEM, err := keys.EncryptPEM(key, password)
	if err != nil {
		return err
	}
	var certs []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, x)
	}
	if err := keys.ReplaceFile(filepath.Join(dir, "cert.key"), keyPEM, 0o600); err != nil {
		return err
	}
	return keys.ReplaceFile(filepath.Join(dir, "cert.pem"), x509util.ChainPEM(certs...), 0o644)
}
