// Package signing implements Nix's Ed25519 signing keys and detached
// signatures ("NAME:base64") and the fingerprint of a store path that they
// sign.
package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"nixpki/internal/keys"
	"nixpki/internal/nix/nixhash"
)

// MaxKeyNameLen bounds key names. Nix sets no limit; names are short labels
// such as "cache.nixos.org-1", and the bound keeps hostile input cheap.
const MaxKeyNameLen = 256

// SecretKey is a Nix binary-cache signing key: a name and an Ed25519 private
// key. Key has the layout Nix stores (seed ‖ public key), which is also Go's,
// so Key can be used directly as a crypto.Signer.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is the public half of a SecretKey: a name and an Ed25519 public
// key. Nix finds keys by name, so a name stands for one key.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// ValidateKeyName reports whether name can name a Nix key: it must be
// non-empty, valid UTF-8, at most MaxKeyNameLen bytes, and contain no ':'
// (the separator), no whitespace (Nix splits trusted-public-keys on
// whitespace) and no control characters.
func ValidateKeyName(name string) error {
	if name == "" {
		return errors.New("key name is empty")
	}
	if len(name) > MaxKeyNameLen {
		return fmt.Errorf("key name is %d bytes long, at most %d allowed", len(name), MaxKeyNameLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("key name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		switch {
		case r == ':':
			return fmt.Errorf("key name %q contains ':'", name)
		case unicode.IsSpace(r):
			return fmt.Errorf("key name %q contains whitespace %q", name, r)
		case unicode.IsControl(r):
			return fmt.Errorf("key name %q contains control character %q", name, r)
		}
	}
	return nil
}

// GenerateKey makes a new signing key named name, like
// nix-store --generate-binary-cache-key.
func GenerateKey(name string) (SecretKey, error) {
	if err := ValidateKeyName(name); err != nil {
		return SecretKey{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SecretKey{}, fmt.Errorf("generating Ed25519 key: %w", err)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

// splitNamed splits "NAME:base64" at the first ':' and decodes the base64
// part with Nix's tolerance (missing padding, embedded newlines). A single
// trailing newline (as left by editors and echo) is accepted; what is an
// error names what, the kind of text being parsed, is.
func splitNamed(what string, text []byte, wantLen int) (string, []byte, error) {
	s := string(text)
	if strings.HasSuffix(s, "\r\n") {
		s = s[:len(s)-2]
	} else {
		s = strings.TrimSuffix(s, "\n")
	}
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%s: missing ':' between name and base64 key data", what)
	}
	if err := ValidateKeyName(name); err != nil {
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	if b64 == "" {
		return "", nil, fmt.Errorf("%s %q: empty key data after ':'", what, name)
	}
	if len(b64) > 4*wantLen {
		return "", nil, fmt.Errorf("%s %q: key data is %d characters long, want %d bytes in base64", what, name, len(b64), wantLen)
	}
	d, err := nixhash.DecodeBase64(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%s %q: %w", what, name, err)
	}
	if len(d) != wantLen {
		return "", nil, fmt.Errorf("%s %q: key data decodes to %d bytes, want %d", what, name, len(d), wantLen)
	}
	return name, d, nil
}

// ParseSecretKey parses a secret key file as written by
// nix-store --generate-binary-cache-key: "NAME:" followed by the base64 of
// the 64-byte Ed25519 private key (seed ‖ public key). It checks that the
// public half matches the seed, which Nix does not, because a mismatched key
// makes signatures nobody can verify.
func ParseSecretKey(text []byte) (SecretKey, error) {
	name, d, err := splitNamed("secret key", text, ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, err
	}
	priv := ed25519.NewKeyFromSeed(d[:ed25519.SeedSize])
	if !bytes.Equal(priv[ed25519.SeedSize:], d[ed25519.SeedSize:]) {
		return SecretKey{}, fmt.Errorf("secret key %q: public half does not match the seed (corrupt key)", name)
	}
	return SecretKey{Name: name, Key: priv}, nil
}

// ParsePublicKey parses a public key: "NAME:" followed by the base64 of the
// 32-byte Ed25519 public key, as in a .pub file or trusted-public-keys.
func ParsePublicKey(text []byte) (PublicKey, error) {
	name, d, err := splitNamed("public key", text, ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(d)}, nil
}

// String returns the key exactly as nix-store --generate-binary-cache-key
// writes the secret key file (no trailing newline). It reveals the secret:
// do not log it.
func (k SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// MarshalText implements encoding.TextMarshaler with the format of String.
func (k SecretKey) MarshalText() ([]byte, error) {
	if err := ValidateKeyName(k.Name); err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	if len(k.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("secret key %q: Ed25519 key is %d bytes, want %d", k.Name, len(k.Key), ed25519.PrivateKeySize)
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseSecretKey.
func (k *SecretKey) UnmarshalText(text []byte) error {
	p, err := ParseSecretKey(text)
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Public returns the public key of k, with the same name. Its Key is nil if
// k.Key is not a 64-byte Ed25519 private key.
func (k SecretKey) Public() PublicKey {
	if len(k.Key) != ed25519.PrivateKeySize {
		return PublicKey{Name: k.Name}
	}
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	copy(pub, k.Key[ed25519.SeedSize:])
	return PublicKey{Name: k.Name, Key: pub}
}

// Sign signs fingerprint (see Fingerprint) with k, as Nix's
// SecretKey::signDetached does. Like ed25519.Sign it panics if k.Key is not
// a valid private key; keys from GenerateKey and ParseSecretKey are.
func (k SecretKey) Sign(fingerprint string) Signature {
	return Signature{Name: k.Name, Sig: ed25519.Sign(k.Key, []byte(fingerprint))}
}

// String returns the key as Nix writes public key files and expects it in
// trusted-public-keys: "NAME:base64".
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// MarshalText implements encoding.TextMarshaler with the format of String.
func (k PublicKey) MarshalText() ([]byte, error) {
	if err := ValidateKeyName(k.Name); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	if len(k.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: Ed25519 key is %d bytes, want %d", k.Name, len(k.Key), ed25519.PublicKeySize)
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParsePublicKey.
func (k *PublicKey) UnmarshalText(text []byte) error {
	p, err := ParsePublicKey(text)
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Equal reports whether k and o have the same name and key.
func (k PublicKey) Equal(o PublicKey) bool {
	return k.Name == o.Name && bytes.Equal(k.Key, o.Key)
}

// Verify reports whether sig is a valid signature of fingerprint by k. As in
// Nix, which looks keys up by name, a signature whose name differs from the
// key's never verifies.
func (k PublicKey) Verify(fingerprint string, sig Signature) bool {
	if sig.Name != k.Name || len(k.Key) != ed25519.PublicKeySize || len(sig.Sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(k.Key, []byte(fingerprint), sig.Sig)
}

// ReadSecretKeyFile reads a secret key written by
// nix-store --generate-binary-cache-key. Like ssh with private keys, it
// refuses a file others may read.
func ReadSecretKeyFile(path string) (SecretKey, error) {
	data, err := keys.ReadPrivateFile(path)
	if err != nil {
		return SecretKey{}, err
	}
	k, err := ParseSecretKey(data)
	if err != nil {
		return SecretKey{}, fmt.Errorf("%s: malformed Nix secret key: %w", path, err)
	}
	return k, nil
}
