package acme

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"

	"github.com/go-jose/go-jose/v4"

	"nixpki/internal/ca"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// revokeCert revokes a certificate this CA issued (RFC 8555 §7.6), signed either by
// the account that ordered it or by the certificate's own key.
func (s *Server) revokeCert(q *request) (*response, error) {
	var p struct {
		Certificate string `json:"certificate"`
		Reason      *int   `json:"reason"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	der, err := base64.RawURLEncoding.DecodeString(p.Certificate)
	if err != nil {
		return nil, malformed("\"certificate\" is not base64url (RFC 4648 §5, no padding)")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, malformed("\"certificate\" is not a DER X.509 certificate")
	}
	reason := 0
	if p.Reason != nil {
		reason = *p.Reason
	}
	// RFC 5280 reasons; 7 is unassigned, certificateHold (6) is not offered.
	if reason < 0 || reason > 10 || reason == 6 || reason == 7 {
		return nil, acmeErr(http.StatusBadRequest, errBadRevocationReason, "revocation reason %d is not allowed: use 0-5, 8, 9 or 10 (RFC 5280)", reason)
	}
	serial := x509util.SerialHex(cert.SerialNumber)
	rec, err := s.db.GetCert(q.ctx, serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (rec.Issuer != ca.IssuerTLS || string(rec.DER) != string(der))) {
		return nil, acmeErr(http.StatusNotFound, errMalformed, "this CA did not issue that certificate")
	}
	if err != nil {
		return nil, internal("reading the certificate", err)
	}
	if q.account != nil {
		// Revocation is not recorded in the transaction that spends the nonce (which
		// checks the account): check a possibly cached account against the database.
		if a, err := s.db.GetACMEAccount(q.ctx, q.account.ID); err != nil || a.Status != "valid" || a.Thumbprint != q.account.Thumbprint {
			return nil, unauthorized("the account is no longer valid with this key (deactivated, or its key changed)")
		}
		o, err := s.db.GetACMEOrderByCert(q.ctx, serial)
		if err != nil || o.AccountID != q.account.ID {
			return nil, unauthorized("the certificate was not issued to this account: sign with the certificate's key or the account that ordered it")
		}
	} else if !certKeyMatches(cert, q.jwk.key) {
		return nil, unauthorized("the JWS \"jwk\" is not the certificate's public key")
	}
	_, err = s.db.RevokeCert(q.ctx, serial, s.now(), reason)
	if errors.Is(err, store.ErrAlreadyRevoked) {
		return nil, acmeErr(http.StatusBadRequest, errAlreadyRevoked, "certificate %s is already revoked", serial)
	}
	if err != nil {
		return nil, internal("revoking", err)
	}
	s.log.Info("acme certificate revoked", "provisioner", q.prov.name, "serial", serial, "reason", reason)
	return &response{status: http.StatusOK}, nil
}

func certKeyMatches(c *x509.Certificate, k *jose.JSONWebKey) bool {
	pk, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pk.Equal(k.Key)
}
