package acme

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// ARI (RFC 9773): a certificate is named by base64url(authority key ID) "."
// base64url(serial number DER content).

const renewalInfoRetry = 6 * time.Hour

// parseCertID splits a certID into the authority key ID and the serial (hex).
func parseCertID(id string) (aki []byte, serial string, err error) {
	a, s, ok := strings.Cut(id, ".")
	if !ok {
		return nil, "", malformed("%q is not an ARI certificate ID (base64url(AKI).base64url(serial))", id)
	}
	aki, err1 := base64.RawURLEncoding.DecodeString(a)
	sb, err2 := base64.RawURLEncoding.DecodeString(s)
	if err1 != nil || err2 != nil || len(aki) == 0 || len(sb) == 0 {
		return nil, "", malformed("%q is not an ARI certificate ID (base64url(AKI).base64url(serial))", id)
	}
	return aki, x509util.SerialHex(new(big.Int).SetBytes(sb)), nil
}

// certID names a certificate of the TLS intermediate by its serial (hex).
func (s *Server) certID(serial string) string {
	n, _ := new(big.Int).SetString(serial, 16)
	b := n.Bytes()
	if len(b) > 0 && b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return encodeB64(s.ca.TLS.Cert.SubjectKeyId) + "." + encodeB64(b)
}

// ourCert finds a certificate of the TLS intermediate by certID; ErrNotFound if the
// ID names another issuer or an unknown serial.
func (s *Server) ourCert(q *request, id string) (*store.Cert, error) {
	aki, serial, err := parseCertID(id)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(aki, s.ca.TLS.Cert.SubjectKeyId) {
		return nil, store.ErrNotFound
	}
	rec, err := s.db.GetCert(q.ctx, serial)
	if err == nil && rec.Issuer != ca.IssuerTLS {
		return nil, store.ErrNotFound
	}
	return rec, err
}

// renewalInfo suggests when to renew (RFC 9773 §4.2): in the last third of the
// certificate's life, starting when a third remains — for a 90-day certificate at 30
// days left, when NixOS renews too — and at once if it was revoked.
func (s *Server) renewalInfo(q *request) (*response, error) {
	rec, err := s.ourCert(q, q.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("certificate issued by this CA")
	}
	if err != nil {
		return nil, err
	}
	life := rec.NotAfter.Sub(rec.NotBefore)
	start := rec.NotAfter.Add(-life / 3)
	end := rec.NotAfter.Add(-life / 6)
	if rec.Revoked() {
		now := s.now().UTC().Truncate(time.Second)
		start, end = now.Add(-time.Hour), now
	}
	res := jsonResponse(http.StatusOK, map[string]any{
		"suggestedWindow": map[string]string{"start": rfc3339(start), "end": rfc3339(end)},
	})
	retryAfter(res.header, renewalInfoRetry)
	return res, nil
}

// replaces resolves newOrder's "replaces": the serial of a certificate this CA issued
// to the same account that shares an identifier with the order. Anything else — a
// certificate of another CA, an unknown one, another account's — is ignored, as RFC
// 9773 lets servers do; an unreadable ID is malformed.
func (s *Server) replaces(q *request, id string, idents []store.ACMEIdentifier) (string, error) {
	if id == "" {
		return "", nil
	}
	rec, err := s.ourCert(q, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	o, err := s.db.GetACMEOrderByCert(q.ctx, rec.Serial)
	if err != nil || o.AccountID != q.account.ID {
		return "", nil
	}
	for _, a := range o.Identifiers {
		for _, b := range idents {
			if a == b {
				return rec.Serial, nil
			}
		}
	}
	return "", nil
}
