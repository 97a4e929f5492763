package ca

import "path/filepath"

// The files of a data directory. RootCert is a stable path users copy.
const (
	RootCertFile  = "root.crt"
	secretsDir    = "secrets"
	offlineDir    = "offline"
	passwordFile  = "secrets/password"
	rootKeyFile   = "secrets/root.key"
	offlineRootKF = "offline/root.key"
)

// Issuer names: the CA keys that sign.
const (
	IssuerRoot = "root"
	IssuerTLS  = "tls"
	IssuerNix  = "nix"
)

func certFile(issuer string) string {
	if issuer == IssuerRoot {
		return RootCertFile
	}
	return issuer + "-intermediate.crt"
}

func keyFile(issuer string) string {
	if issuer == IssuerRoot {
		return rootKeyFile
	}
	return filepath.Join(secretsDir, issuer+"-intermediate.key")
}

// KeyPath is where the named CA key lives in dir (the root's while it is online).
func KeyPath(dir, issuer string) string { return filepath.Join(dir, keyFile(issuer)) }

// CertPath is where the certificate of the named CA key lives in dir.
func CertPath(dir, issuer string) string { return filepath.Join(dir, certFile(issuer)) }
