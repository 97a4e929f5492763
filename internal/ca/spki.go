package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
)

// rawSubjectPublicKey returns the subjectPublicKey BIT STRING contents of a
// certificate, which OCSP's issuerKeyHash covers (RFC 6960 4.1.1).
func rawSubjectPublicKey(c *x509.Certificate) []byte {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil
	}
	return spki.PublicKey.RightAlign()
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
