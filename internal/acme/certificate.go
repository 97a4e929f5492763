package acme

import (
	"encoding/pem"
	"errors"
	"net/http"

	"nixpki/internal/store"
)

// certificate downloads an issued certificate with its chain (RFC 8555 §7.4.2):
// application/pem-certificate-chain, the leaf first, then the TLS intermediate.
func (s *Server) certificate(q *request) (*response, error) {
	serial := q.r.PathValue("serial")
	o, der, err := s.db.GetACMEOrderCert(q.ctx, serial)
	if errors.Is(err, store.ErrNotFound) || (err == nil && o.Provisioner != q.prov.name) {
		return nil, notFound("certificate")
	}
	if err != nil {
		return nil, internal("reading the order", err)
	}
	if o.AccountID != q.account.ID {
		return nil, unauthorized("this certificate was issued to another account")
	}
	body := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), s.chain...)
	return &response{status: http.StatusOK, raw: body, ctype: "application/pem-certificate-chain"}, nil
}
