package x509util

import (
	"bytes"
	"encoding/pem"
	"testing"
)

func FuzzParseCertsPEM(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	// A PEM block of another type (an empty SEQUENCE, no key in it) is skipped.
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE " + "KEY", Bytes: []byte{0x30, 0}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertsPEM(data)
		if err != nil {
			return
		}
		// What parses renders back to PEM that parses to the same certificates.
		again, err := ParseCertsPEM(ChainPEM(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-parsing %d certificates: %d, %v", len(certs), len(again), err)
		}
		for i := range certs {
			if !bytes.Equal(again[i].Raw, certs[i].Raw) {
				t.Fatalf("certificate %d changed", i)
			}
		}
	})
}
