package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"strings"
	"testing"
)

func FuzzParseSANs(f *testing.F) {
	for _, s := range []string{"web.internal,100.64.0.3", "[::1]", "*.a.internal", "999.1.1.1", "a..b", "-x.y", "xn--bcher-kva.example", "fe80::1%eth0", strings.Repeat("a.", 130) + "com"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, names string, wildcards bool) {
		s, err := ParseSANs(strings.Split(names, ","), wildcards)
		if err != nil {
			return
		}
		// Whatever is accepted is normalised: re-parsing it gives the same names.
		var again []string
		again = append(again, s.DNS...)
		for _, ip := range s.IPs {
			again = append(again, ip.String())
		}
		s2, err := ParseSANs(again, wildcards)
		if err != nil || len(s2.DNS) != len(s.DNS) || len(s2.IPs) != len(s.IPs) {
			t.Fatalf("accepted %q but not its normal form %q: %v", names, again, err)
		}
		for _, d := range s.DNS {
			if len(d) > 253 || strings.ContainsAny(d, " /\x00") || (!wildcards && strings.Contains(d, "*")) {
				t.Fatalf("accepted bad DNS name %q", d)
			}
			if net.ParseIP(d) != nil {
				t.Fatalf("IP %q accepted as a DNS name", d)
			}
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	k := leafKeyF(f)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a.internal"}, DNSNames: []string{"a.internal"}}, k)
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	f.Add(der[:len(der)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}
