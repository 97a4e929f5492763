package signing

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
)

// Signature is a detached Ed25519 signature of a store path's fingerprint by
// the key called Name, written "NAME:base64" in narinfo Sig lines and in
// nix path-info --sigs.
type Signature struct {
	Name string
	Sig  []byte // 64 bytes
}

// ParseSignature parses "NAME:base64" with the same rules as ParsePublicKey;
// the signature must decode to 64 bytes.
func ParseSignature(s string) (Signature, error) {
	name, d, err := splitNamed("signature", []byte(s), ed25519.SignatureSize)
	if err != nil {
		return Signature{}, err
	}
	return Signature{Name: name, Sig: d}, nil
}

// Sign signs fingerprint with secret; see SecretKey.Sign.
func Sign(secret SecretKey, fingerprint string) Signature {
	return secret.Sign(fingerprint)
}

// String returns the signature as Nix writes it: "NAME:base64".
func (s Signature) String() string {
	return s.Name + ":" + base64.StdEncoding.EncodeToString(s.Sig)
}

// MarshalText implements encoding.TextMarshaler with the format of String.
func (s Signature) MarshalText() ([]byte, error) {
	if err := ValidateKeyName(s.Name); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	if len(s.Sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signature %q: %d bytes, want %d", s.Name, len(s.Sig), ed25519.SignatureSize)
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseSignature.
func (s *Signature) UnmarshalText(text []byte) error {
	p, err := ParseSignature(string(text))
	if err != nil {
		return err
	}
	*s = p
	return nil
}
