package acme

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// finalize issues the certificate of a ready order from the client's CSR (RFC 8555
// §7.4). Issuance is synchronous: the answer is the valid order.
func (s *Server) finalize(q *request) (*response, error) {
	o, err := s.ownOrder(q)
	if err != nil {
		return nil, err
	}
	var p struct {
		CSR string `json:"csr"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	if st := s.orderStatus(o); st != "ready" {
		return nil, acmeErr(http.StatusForbidden, errOrderNotReady, "the order is %s, not ready: %s", st, notReadyHint(st))
	}
	der, err := base64.RawURLEncoding.DecodeString(p.CSR)
	if err != nil {
		return nil, malformed("\"csr\" is not base64url (RFC 4648 §5, no padding)")
	}
	csr, err := checkCSR(der, o.Identifiers, q.prov)
	if err != nil {
		return nil, err
	}
	if err := s.notAccountKey(q, csr.PublicKey); err != nil {
		return nil, err
	}
	tmpl, validity, err := s.template(q, o, csr)
	if err != nil {
		return nil, err
	}
	iss, err := s.ca.Sign(q.ctx, s.ca.TLS, tmpl, csr.PublicKey, validity, ca.Meta{Requester: q.accountURL(q.account.ID), Method: "acme"})
	if err != nil {
		return nil, internal("signing", err)
	}
	serial := x509util.SerialHex(iss.Cert.SerialNumber)
	if err := s.db.FinalizeACMEOrder(q.ctx, o.ID, serial, nil); err != nil {
		// Another request finalized the order meanwhile: nobody receives this
		// certificate, so it must not stay valid.
		if _, rerr := s.db.RevokeCert(q.ctx, serial, s.now(), ocspSuperseded); rerr != nil {
			s.log.Error("acme: revoking an unclaimed certificate", "serial", serial, "err", rerr)
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, acmeErr(http.StatusForbidden, errOrderNotReady, "the order was finalized by another request")
		}
		return nil, storeErr(err, "order")
	}
	s.log.Info("acme certificate issued", "provisioner", q.prov.name, "account", q.account.ID, "order", o.ID,
		"serial", serial, "names", o.Identifiers, "not_after", iss.Cert.NotAfter.Format(time.RFC3339))
	o.Status, o.CertSerial = "valid", serial
	return s.orderResponse(q, http.StatusOK, o), nil
}

// notAccountKey refuses a CSR for the account's own key (RFC 8555 §11.1): the key
// that controls the account must not also be a certificate's key.
func (s *Server) notAccountKey(q *request, pub crypto.PublicKey) error {
	k, err := s.keys.get(q.account.JWK)
	if err != nil {
		return internal("parsing the account key", err)
	}
	if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && eq.Equal(k.Key) {
		return acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's public key is this account's key: generate a separate key for the certificate")
	}
	return nil
}

// ocspSuperseded is RFC 5280's reason code 4.
const ocspSuperseded = 4

func notReadyHint(status string) string {
	switch status {
	case "pending":
		return "complete its authorizations first"
	case "processing", "valid":
		return "it was finalized already; fetch the order"
	}
	return "create a new order"
}

// checkCSR parses a CSR and checks its signature, its key against the provisioner's
// accepted types, and that its names are exactly the order's identifiers.
func checkCSR(der []byte, idents []store.ACMEIdentifier, prov *provisioner) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR is not a DER PKCS#10 certificate request: send the base64url of its DER form, not PEM")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's self-signature does not verify with its public key")
	}
	if err := prov.checkCSRKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR has email or URI names: only the order's DNS names and IP addresses may be requested")
	}
	var names []string
	names = append(names, csr.DNSNames...)
	for _, ip := range csr.IPAddresses {
		names = append(names, ip.String())
	}
	want := map[string]bool{}
	for _, id := range idents {
		want[id.Value] = true
	}
	cn := csr.Subject.CommonName
	if cn != "" && len(names) == 0 {
		names = []string{cn}
	}
	got, err := ca.ParseSANs(names, true)
	if err != nil {
		return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's names: %v", err)
	}
	have := map[string]bool{}
	for _, d := range got.DNS {
		have[d] = true
	}
	for _, ip := range got.IPs {
		have[ip.String()] = true
	}
	if cn != "" {
		if c, err := ca.ParseSANs([]string{cn}, true); err != nil || !have[firstName(c)] {
			return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's common name %q is not one of its subject alternative names", cn)
		}
	}
	for n := range have {
		if !want[n] {
			return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR names %s, which is not an identifier of the order", n)
		}
	}
	for n := range want {
		if !have[n] {
			return nil, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR lacks %s, an identifier of the order", n)
		}
	}
	return csr, nil
}

func firstName(s ca.SANs) string {
	if len(s.DNS) > 0 {
		return s.DNS[0]
	}
	if len(s.IPs) > 0 {
		return s.IPs[0].String()
	}
	return ""
}

// template builds the leaf for an order: its identifiers (DNS names first), the
// profile's usages, the order's notBefore and notAfter if it has them (else the
// profile's lifetime from now), after the CA's name constraints.
func (s *Server) template(q *request, o *store.ACMEOrder, csr *x509.CertificateRequest) (*x509.Certificate, time.Duration, error) {
	names := make([]string, len(o.Identifiers))
	for i, id := range o.Identifiers {
		names[i] = id.Value
	}
	sans, err := ca.ParseSANs(names, true)
	if err == nil {
		err = ca.CheckNameConstraints(s.ca.TLS, sans)
	}
	if err != nil {
		return nil, 0, acmeErr(http.StatusBadRequest, errRejectedIdentifier, "%v", err)
	}
	prof := q.prov.profiles[o.Profile]
	validity := q.prov.lifetime(o.Profile)
	if err := s.checkWindow(q.prov, o.Profile, o.NotBefore, o.NotAfter, "create a new order"); err != nil {
		return nil, 0, err
	}
	cn := firstName(sans)
	if len(cn) > 64 {
		cn = "" // the subject is optional; the SANs carry the names
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if prof.ClientAuth {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	ku := x509.KeyUsageDigitalSignature
	if keys.TypeOf(csr.PublicKey) == keys.RSA3072 {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		NotBefore:   o.NotBefore, // zero: from now; else exactly as ordered
		NotAfter:    o.NotAfter,
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    slices.Clone(sans.DNS),
		IPAddresses: sans.IPs,
		KeyUsage:    ku,
		ExtKeyUsage: eku,
	}
	if ext, ok, err := tlsFeature(csr); err != nil {
		return nil, 0, err
	} else if ok {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	if len(tmpl.DNSNames)+len(tmpl.IPAddresses) == 0 {
		return nil, 0, fmt.Errorf("order %s has no names", o.ID)
	}
	return tmpl, validity, nil
}

// oidTLSFeature is id-pe-tlsfeature (RFC 7633).
var oidTLSFeature = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}

// TLS features (RFC 7633 §4.2, the TLS extension numbers): status_request (must-staple)
// and status_request_v2, both answerable since the CA runs an OCSP responder.
const (
	tlsStatusRequest   = 5
	tlsStatusRequestV2 = 17
)

// tlsFeature returns the TLS feature extension a CSR requests (RFC 7633: must-staple),
// for the certificate; features other than OCSP stapling are refused.
func tlsFeature(csr *x509.CertificateRequest) (pkix.Extension, bool, error) {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidTLSFeature) {
			continue
		}
		var features []int
		if rest, err := asn1.Unmarshal(e.Value, &features); err != nil || len(rest) > 0 || len(features) == 0 {
			return pkix.Extension{}, false, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's TLS feature extension must be a non-empty list of TLS extension numbers")
		}
		for _, f := range features {
			if f != tlsStatusRequest && f != tlsStatusRequestV2 {
				return pkix.Extension{}, false, acmeErr(http.StatusBadRequest, errBadCSR, "the CSR requests TLS feature %d: only status_request (5, OCSP must-staple) and status_request_v2 (17) are supported", f)
			}
		}
		return pkix.Extension{Id: oidTLSFeature, Value: e.Value}, true, nil
	}
	return pkix.Extension{}, false, nil
}
