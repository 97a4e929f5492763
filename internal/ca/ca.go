// Package ca is nixpki's certificate authority: it creates the root and the two
// intermediates (TLS, Nix signing), loads their keys, issues and records certificates
// under policy, revokes them, and answers for them with CRLs and OCSP.
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// Issuer is one signing CA key with its certificate.
type Issuer struct {
	Name    string // IssuerTLS or IssuerNix
	Cert    *x509.Certificate
	Signer  crypto.Signer
	KeyType keys.Type
}

// CA is a loaded certificate authority.
type CA struct {
	Dir    string
	Config config.Config
	Root   *x509.Certificate
	TLS    *Issuer
	Nix    *Issuer
	// DB is the database the CA opened (closed by Close); Certs is the part of it
	// the CA itself uses.
	DB    *store.DB
	Certs Certs
	Log   *slog.Logger
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// password decrypts the CA's keys, and encrypts the server key it keeps.
	password []byte
}

// Open loads the CA in dir. passwordFile overrides the file recorded at init.
func Open(ctx context.Context, dir, passwordFile string, log *slog.Logger) (*CA, error) {
	return OpenSettings(ctx, dir, "", passwordFile, log)
}

// OpenSettings loads the CA in dir with its settings from settingsFile (empty: from
// D/config.json). passwordFile overrides the configured one.
func OpenSettings(ctx context.Context, dir, settingsFile, passwordFile string, log *slog.Logger) (*CA, error) {
	if err := checkDataDir(dir); err != nil {
		return nil, err
	}
	cfg, err := config.LoadDir(dir, settingsFile)
	if err != nil {
		return nil, err
	}
	if passwordFile == "" {
		if passwordFile, err = config.SecretPath(dir, cfg.PasswordFile); err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
	}
	password, err := keys.ReadPassword(passwordFile)
	if err != nil {
		return nil, err
	}
	c := &CA{Dir: dir, Config: cfg, Log: log, Now: time.Now, password: password}
	if c.Root, err = x509util.ReadCertFile(CertPath(dir, IssuerRoot)); err != nil {
		return nil, err
	}
	for _, name := range []string{IssuerTLS, IssuerNix} {
		iss, err := loadIssuer(dir, name, password)
		if err != nil {
			return nil, err
		}
		if err := iss.Cert.CheckSignatureFrom(c.Root); err != nil {
			return nil, fmt.Errorf("%s is not signed by %s: %w", CertPath(dir, name), CertPath(dir, IssuerRoot), err)
		}
		if name == IssuerTLS {
			c.TLS = iss
		} else {
			c.Nix = iss
		}
	}
	dbs := DatabaseSettings(dir, cfg)
	if dbs.URL == "" {
		c.DB, err = openDB(ctx, dbs.SQLitePath)
	} else {
		c.DB, err = store.Open(ctx, dbs)
	}
	if err != nil {
		return nil, err
	}
	if log != nil {
		log.Info("database", "kind", c.DB.Dialect(), "at", dbs.Describe())
	}
	c.Certs = c.DB
	return c, nil
}

// DatabaseSettings are the database a data directory's configuration names.
func DatabaseSettings(dir string, cfg config.Config) store.Settings {
	s := store.Settings{SQLitePath: config.Resolve(dir, cfg.Database.Path)}
	if cfg.Database.Postgres() {
		s.URL, s.PasswordFile = cfg.Database.URL, config.Resolve(dir, cfg.Database.PasswordFile)
	}
	return s
}

// Close releases the database.
func (c *CA) Close() error { return c.DB.Close() }

func loadIssuer(dir, name string, password []byte) (*Issuer, error) {
	cert, err := x509util.ReadCertFile(CertPath(dir, name))
	if err != nil {
		return nil, err
	}
	signer, err := keys.LoadSigner(filepath.Join(dir, keyFile(name)), password)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the key in %s", filepath.Join(dir, keyFile(name)), CertPath(dir, name))
	}
	return &Issuer{Name: name, Cert: cert, Signer: signer, KeyType: keys.TypeOf(cert.PublicKey)}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// Issuer returns the named signing CA key (tls or nix).
func (c *CA) Issuer(name string) (*Issuer, error) {
	switch name {
	case IssuerTLS, "":
		return c.TLS, nil
	case IssuerNix:
		return c.Nix, nil
	}
	return nil, fmt.Errorf("unknown issuer %q: use tls or nix", name)
}

// RootPEM is the root certificate in PEM.
func (c *CA) RootPEM() []byte { return x509util.ChainPEM(c.Root) }

func recordCert(ctx context.Context, db Certs, cert *x509.Certificate, issuer, requester, method string) error {
	return db.PutCert(ctx, certRecord(cert, issuer, requester, method))
}

// certRecord is the database row of a certificate the CA issued.
func certRecord(cert *x509.Certificate, issuer, requester, method string) *store.Cert {
	return &store.Cert{
		Serial:    x509util.SerialHex(cert.SerialNumber),
		Issuer:    issuer,
		Subject:   cert.Subject.String(),
		SANs:      sanStrings(cert),
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		DER:       cert.Raw,
		Requester: requester,
		Method:    method,
		CreatedAt: time.Now(),
	}
}

func sanStrings(cert *x509.Certificate) []string {
	var out []string
	out = append(out, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range cert.URIs {
		out = append(out, u.String())
	}
	return out
}
