package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"nixpki/internal/x509util"
)

// NixOSTrustSnippet is the NixOS configuration that makes a host trust the root.
func NixOSTrustSnippet(root *x509.Certificate) string {
	pemText := strings.TrimRight(string(x509util.ChainPEM(root)), "\n")
	return fmt.Sprintf("# %s (SHA-256 %s)\nsecurity.pki.certificates = [ ''\n%s\n'' ];\n", root.Subject.CommonName, x509util.Fingerprint(root), pemText)
}

// systemBundles are the places distributions keep their CA bundle (Debian, NixOS,
// Fedora, Alpine, openSUSE), in the order tried.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// Bundle returns a PEM CA bundle: the root, and with withSystem the system's roots
// after it (from $SSL_CERT_FILE or the distribution's bundle).
func Bundle(root *x509.Certificate, withSystem bool) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n", root.Subject.CommonName)
	b.Write(x509util.ChainPEM(root))
	if !withSystem {
		return b.Bytes(), nil
	}
	paths := systemBundles
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		paths = []string{f}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, err := x509util.ParseCertsPEM(data); err != nil {
			return nil, fmt.Errorf("system bundle %s: %w", p, err)
		}
		b.WriteString("\n")
		b.Write(bytes.TrimSpace(data))
		b.WriteString("\n")
		return b.Bytes(), nil
	}
	return nil, errors.New("--with-system: no system CA bundle found (tried $SSL_CERT_FILE and " + strings.Join(systemBundles, ", ") + "); install ca-certificates")
}
