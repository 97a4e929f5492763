package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"nixpki/internal/keys"
	"nixpki/internal/x509util"
)

// The server's own TLS certificate is kept, its key encrypted like the CA's keys, so
// that a restart reuses it instead of minting another for the same names.
const (
	serverCertFile = "server.crt"
	serverKeyFile  = "secrets/server.key"
)

// SaveServerCert keeps the server's certificate chain and key for the next start.
func (c *CA) SaveServerCert(chain []*x509.Certificate, key crypto.Signer) error {
	if err := keys.WriteEncrypted(filepath.Join(c.Dir, serverKeyFile), key, c.password); err != nil {
		return fmt.Errorf("keeping the server key: %w", err)
	}
	return os.WriteFile(filepath.Join(c.Dir, serverCertFile), x509util.ChainPEM(chain...), 0o644)
}

// errNoServerCert: nothing kept, or what is kept no longer fits.
var errNoServerCert = errors.New("no reusable server certificate")

// LoadServerCert returns the kept server certificate if it still fits: issued by the
// current TLS intermediate for exactly the configured names, before two thirds of its
// life (when the server would renew it anyway) and not revoked.
func (c *CA) LoadServerCert(ctx context.Context) ([]*x509.Certificate, crypto.Signer, error) {
	data, err := os.ReadFile(filepath.Join(c.Dir, serverCertFile))
	if err != nil {
		return nil, nil, errNoServerCert
	}
	chain, err := x509util.ParseCertsPEM(data)
	if err != nil || len(chain) == 0 {
		return nil, nil, errNoServerCert
	}
	leaf := chain[0]
	if leaf.CheckSignatureFrom(c.TLS.Cert) != nil {
		return nil, nil, errNoServerCert
	}
	now := c.Now()
	if now.Before(leaf.NotBefore) || !now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)*2/3)) {
		return nil, nil, errNoServerCert
	}
	want := append(slices.Clone(c.Config.DNSNames), c.Config.IPAddresses...)
	have := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		have = append(have, ip.String())
	}
	if !sameNames(want, have) {
		return nil, nil, errNoServerCert
	}
	if rec, err := c.Certs.GetCert(ctx, x509util.SerialHex(leaf.SerialNumber)); err != nil || rec.Revoked() {
		return nil, nil, errNoServerCert
	}
	key, err := keys.LoadSigner(filepath.Join(c.Dir, serverKeyFile), c.password)
	if err != nil || !publicKeysEqual(key.Public(), leaf.PublicKey) {
		return nil, nil, errNoServerCert
	}
	return chain, key, nil
}

// sameNames compares name lists as sets, ignoring case and IPv6 brackets.
func sameNames(a, b []string) bool {
	norm := func(l []string) []string {
		out := make([]string, 0, len(l))
		for _, n := range l {
			n = strings.ToLower(strings.Trim(strings.TrimSpace(n), "[]"))
			if ip := net.ParseIP(n); ip != nil {
				n = ip.String()
			}
			out = append(out, n)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}
