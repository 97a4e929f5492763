package gate

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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/x509util"
)

// acmeCerts obtains and renews the gate's HTTPS certificate from an ACME directory
// (nixpki serve's), answering TLS-ALPN-01 challenges on the gate's own listener.
// The account key, certificate and key are kept in G/acme, keys encrypted with the
// gate's password.
type acmeCerts struct {
	g      *Gate
	names  []string
	client *acme.Client

	mu         sync.Mutex
	cert       *tls.Certificate
	leaf       *x509.Certificate
	challenges map[string]*tls.Certificate
}

func (g *Gate) newACME() (*acmeCerts, error) {
	names := g.Cfg.ACME.Names
	if len(names) == 0 {
		names = []string{g.Cfg.Name}
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(g.trust.v.Root())
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	a := &acmeCerts{g: g, names: names, challenges: map[string]*tls.Certificate{}}
	dir := filepath.Join(g.Dir, ACMECacheDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	password, err := keys.ReadPassword(config.Resolve(g.Dir, g.Cfg.PasswordFile))
	if err != nil {
		return nil, err
	}
	accountKey, err := a.loadOrMakeKey(filepath.Join(dir, "account.key"), password)
	if err != nil {
		return nil, err
	}
	a.client = &acme.Client{Key: accountKey, DirectoryURL: g.Cfg.ACME.Directory, HTTPClient: hc, UserAgent: "nixpki-gate"}
	if c, err := a.load(password); err == nil {
		a.setCert(c)
	}
	return a, nil
}

func (a *acmeCerts) loadOrMakeKey(path string, password []byte) (crypto.Signer, error) {
	if _, err := os.Stat(path); err == nil {
		return keys.LoadSigner(path, password)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return k, keys.WriteEncrypted(path, k, password)
}

func (a *acmeCerts) load(password []byte) (*tls.Certificate, error) {
	dir := filepath.Join(a.g.Dir, ACMECacheDir)
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

func (a *acmeCerts) setCert(c *tls.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cert, a.leaf = c, c.Leaf
}

// getCertificate answers challenge handshakes (ALPN acme-tls/1) with the challenge
// certificate and others with the obtained certificate.
func (a *acmeCerts) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
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
func (a *acmeCerts) needsRenewal(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leaf == nil {
		return true
	}
	life := a.leaf.NotAfter.Sub(a.leaf.NotBefore)
	return now.After(a.leaf.NotAfter.Add(-life / 3))
}

// run obtains the certificate when needed, checking every minute until ctx is done.
func (a *acmeCerts) run(ctx context.Context) {
	for {
		if a.needsRenewal(time.Now()) {
			octx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			err := a.obtain(octx)
			cancel()
			if err != nil {
				a.g.Log.Error("ACME: obtaining the gate's certificate", "directory", a.g.Cfg.ACME.Directory, "err", err)
			} else {
				a.g.Log.Info("ACME: obtained the gate's certificate", "names", a.names)
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

func (a *acmeCerts) obtain(ctx context.Context) error {
	acct := &acme.Account{}
	if a.g.Cfg.ACME.Email != "" {
		acct.Contact = []string{"mailto:" + a.g.Cfg.ACME.Email}
	}
	if _, err := a.client.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("registering: %w", err)
	}
	order, err := a.client.AuthorizeOrder(ctx, identifiers(a.names))
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
			return fmt.Errorf("tls-alpn-01 for %s: %w", z.Identifier.Value, err)
		}
	}
	if order, err = a.client.WaitOrder(ctx, order.URI); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.names[0]}}
	for _, n := range a.names {
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
func (a *acmeCerts) store(c *tls.Certificate, key crypto.Signer) error {
	dir := filepath.Join(a.g.Dir, ACMECacheDir)
	password, err := keys.ReadPassword(config.Resolve(a.g.Dir, a.g.Cfg.PasswordFile))
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
