package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ocsp"
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

func FuzzParseOCSPRequest(f *testing.F) {
	k := leafKeyF(f)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "issuer"}, IsCA: true, BasicConstraintsValid: true}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	issuer, _ := x509.ParseCertificate(der)
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		req, _ := ocsp.CreateRequest(issuer, issuer, &ocsp.RequestOptions{Hash: h})
		f.Add(req)
	}
	var r ocspRequestASN
	asn1.Unmarshal(must(ocsp.CreateRequest(issuer, issuer, nil)), &r)
	nonce, _ := asn1.Marshal(make([]byte, 16))
	r.TBS.Exts = []pkix.Extension{{Id: oidOCSPNonce, Value: nonce}}
	withNonce, _ := asn1.Marshal(r)
	f.Add(withNonce)
	f.Add(withNonce[:len(withNonce)-3])
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseOCSPRequest(data)
		if err != nil {
			return
		}
		if n := len(req.certIDs); n == 0 || n > maxOCSPCertIDs || len(req.hashes) != n {
			t.Fatalf("accepted %d CertIDs", n)
		}
		for i, h := range req.hashes {
			if !h.Available() || req.certIDs[i].Serial.Sign() <= 0 {
				t.Fatalf("accepted CertID %d with hash %v, serial %v", i, h, req.certIDs[i].Serial)
			}
		}
		if req.nonce != nil {
			var n []byte
			if _, err := asn1.Unmarshal(req.nonce.Value, &n); err != nil || len(n) == 0 || len(n) > maxOCSPNonce {
				t.Fatalf("accepted nonce %x", req.nonce.Value)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
