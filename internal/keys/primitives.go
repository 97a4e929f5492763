// Package keys owns nixpki's private keys: which algorithms it uses, how keys are
// generated, and how they are kept encrypted at rest. Every cryptographic choice the
// CA makes is written down in this file, each with the reason for it; other packages
// take keys as crypto.Signer and never pick an algorithm themselves.
package keys

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
)

// Type names a key algorithm as users spell it on the command line and in config.
type Type string

const (
	// P256 is the default: ECDSA P-256 is what ACME clients (lego's ec256), browsers
	// and OpenSSL all support, with small keys and fast signatures.
	P256 Type = "p256"
	// P384 is for policies that demand a 192-bit security level.
	P384 Type = "p384"
	// Ed25519 gives deterministic signatures with no nonce to get wrong; OpenSSL 1.1.1+
	// verifies it, though some TLS stacks still don't accept it in chains.
	Ed25519 Type = "ed25519"
	// RSA3072 is for relying parties that cannot do elliptic curves; 3072 bits
	// matches the 128-bit level of P-256 (NIST SP 800-57).
	RSA3072 Type = "rsa3072"
)

// Types lists the accepted key types, default first.
var Types = []Type{P256, P384, Ed25519, RSA3072}

// rsaBits is the modulus size for RSA3072 (see above).
const rsaBits = 3072

// pkcs8Opts encrypts keys at rest as PKCS#8 PBES2: AES-256-CBC with a PBKDF2-HMAC-SHA256
// key; this is what `openssl pkey` reads on every OpenSSL since 1.0, and 600,000
// iterations is OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
var pkcs8Opts = &pkcs8.Opts{
	Cipher: pkcs8.AES256CBC,
	KDFOpts: pkcs8.PBKDF2Opts{
		SaltSize:       16, // 128-bit salt, as NIST SP 800-132 recommends.
		IterationCount: kdfIterations(),
		HMACHash:       crypto.SHA256,
	},
}

// kdfIterations is 600,000 in the nixpki binary. Test binaries (go test) use 1,000 so
// that tests creating many CAs run quickly under the race detector; their keys are
// still valid PKCS#8 that OpenSSL reads. No flag or variable reaches this.
func kdfIterations() int {
	if testing.Testing() {
		return 1000
	}
	return 600_000
}

// GeneratedPasswordBytes is the entropy of a generated key password: 256 bits, so the
// password, not PBKDF2, is never the weak link.
const GeneratedPasswordBytes = 32

// SerialBytes is the size of certificate serials: 128 random bits (top bit cleared so
// the number stays positive), well above the 64 bits CA/B Forum requires.
const SerialBytes = 16

// Backdate is how far notBefore is set before the issuing moment, to absorb clock skew
// between the CA and relying parties; one minute keeps the window honest.
const Backdate = time.Minute

// SignatureAlgorithm picks the certificate signature algorithm for a CA key type:
// SHA-256 for P-256 and RSA, SHA-384 for P-384 (match hash to curve strength), and
// pure Ed25519 for Ed25519.
func SignatureAlgorithm(t Type) x509.SignatureAlgorithm {
	switch t {
	case P384:
		return x509.ECDSAWithSHA384
	case Ed25519:
		return x509.PureEd25519
	case RSA3072:
		return x509.SHA256WithRSA
	default:
		return x509.ECDSAWithSHA256
	}
}

// Store contents (not keys or signatures): `nixpki verify` hashes the NARs of local
// store paths with multi-buffer SHA-256 when the CPU has AVX-512
// (github.com/minio/sha256-simd's sixteen-lane kernel, a module dependency): it is still
// SHA-256, as NarHash demands, at about three times the throughput of one SHA-NI
// stream per core, for integrity checks only; its digests are compared with
// crypto/sha256's in tests and fuzz targets, and NIXPKI_SHA256=generic forces
// crypto/sha256. Everything that signs, verifies or derives keys uses the
// standard library.
