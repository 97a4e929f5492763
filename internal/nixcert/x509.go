package nixcert

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
)

// The profile's object identifiers and the serial and PEM conventions of the CA
// (docs/asn1.md), held here so that verifying needs no CA code.
var (
	// OIDNixStoreSigning is the extended key usage of Nix store-signing certificates
	// and of the intermediate that issues them.
	OIDNixStoreSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}
	// OIDNixConstraints is the critical extension carrying a Nix certificate's key
	// name, targets and scope.
	OIDNixConstraints = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 2}
)

// serialHex renders a serial as the CA stores and prints it: lowercase hex, an even
// number of digits.
func serialHex(n *big.Int) string {
	s := n.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// parseCertsPEM parses every CERTIFICATE block in data; at least one is required.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bad certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}
