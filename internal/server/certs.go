package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"sync"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// certManager keeps the server's own TLS certificate, issued by its TLS intermediate
// for the configured names and renewed when two thirds of its life has passed — no
// ACME round trip to itself, so no chicken-and-egg at start.
type certManager struct {
	ca   *ca.CA
	log  *slog.Logger
	mu   sync.RWMutex
	cert *tls.Certificate
}

func (m *certManager) current() *tls.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cert
}

func (m *certManager) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.current(), nil }

// start takes the certificate kept from the last run if it still fits, else
// issues one.
func (m *certManager) start(ctx context.Context) error {
	if chain, key, err := m.ca.LoadServerCert(ctx); err == nil {
		m.set(chain, key)
		m.log.Info("server certificate reused", "serial", x509util.SerialHex(chain[0].SerialNumber), "not_after", chain[0].NotAfter.Format(time.RFC3339))
		return nil
	}
	return m.renew(ctx)
}

func (m *certManager) set(chain []*x509.Certificate, key crypto.Signer) {
	tc := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	m.mu.Lock()
	m.cert = tc
	m.mu.Unlock()
}

func (m *certManager) renew(ctx context.Context) error {
	key, err := keys.Generate(keys.P256)
	if err != nil {
		return err
	}
	cfg := m.ca.Config
	names := append(append([]string{}, cfg.DNSNames...), cfg.IPAddresses...)
	req := ca.TLSRequest{
		Names:     names,
		PublicKey: key.Public(),
		Validity:  cfg.Policy.ServerCertValidity.D(),
		Meta:      ca.Meta{Requester: "nixpki serve", Method: "server"},
	}
	iss, err := m.ca.IssueTLS(ctx, req)
	if errors.Is(err, store.ErrReadOnly) {
		// A standby takes no records; its own certificate lives a day, unrecorded,
		// and is replaced from a writable database when there is one again.
		m.log.Warn("the database is read-only: serving with an unrecorded one-day server certificate")
		req.Meta.Unrecorded, req.Validity = true, min(req.Validity, 24*time.Hour)
		iss, err = m.ca.IssueTLS(ctx, req)
	}
	if err != nil {
		return err
	}
	m.set(iss.Chain, key)
	if err := m.ca.SaveServerCert(iss.Chain, key); err != nil {
		m.log.Warn("the server certificate is not kept for the next start", "err", err)
	}
	m.log.Info("server certificate issued", "serial", x509util.SerialHex(iss.Cert.SerialNumber), "not_after", iss.Cert.NotAfter.Format(time.RFC3339))
	return nil
}

// loop renews the certificate before it expires until ctx ends; a failed renewal is
// retried every minute.
func (m *certManager) loop(ctx context.Context) {
	for {
		leaf := m.current().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		wait := time.Until(leaf.NotBefore.Add(life * 2 / 3))
		if wait < 0 {
			wait = 0
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err := m.renew(ctx); err != nil {
			m.log.Error("renewing the server certificate failed; retrying in a minute", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}
