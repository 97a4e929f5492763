package tlscert

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"nixpki/internal/keys"
)

// Files serves a certificate from PEM files, re-read when they change (checked at
// most every 10 seconds). The key may be encrypted with the password in
// PasswordFile.
type Files struct {
	Cert, Key, PasswordFile string

	mu      sync.Mutex
	loaded  *tls.Certificate
	mtime   time.Time
	checked time.Time
}

// GetCertificate returns the certificate, for tls.Config.GetCertificate.
func (k *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded != nil && time.Since(k.checked) < 10*time.Second {
		return k.loaded, nil
	}
	k.checked = time.Now()
	fi, err := os.Stat(k.Cert)
	if err != nil {
		return nil, err
	}
	if k.loaded != nil && fi.ModTime().Equal(k.mtime) {
		return k.loaded, nil
	}
	certPEM, err := os.ReadFile(k.Cert)
	if err != nil {
		return nil, err
	}
	keyPEM, err := keys.ReadPrivateFile(k.Key)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(keyPEM), "ENCRYPTED PRIVATE KEY") {
		password, err := keys.ReadPassword(k.PasswordFile)
		if err != nil {
			return nil, err
		}
		signer, err := keys.DecryptPEM(keyPEM, password, k.Key)
		if err != nil {
			return nil, err
		}
		keyPEM, err = marshalPKCS8PEM(signer)
		if err != nil {
			return nil, err
		}
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s / key %s: %w", k.Cert, k.Key, err)
	}
	k.loaded, k.mtime = &c, fi.ModTime()
	return k.loaded, nil
}

func marshalPKCS8PEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
