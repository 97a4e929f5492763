package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"

	"nixpki/internal/store"
)

var eabAlgorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}

// checkEAB verifies a newAccount's externalAccountBinding (RFC 8555 §7.3.4): a JWS
// MAC'd with a key the operator created, over the account's own key, for this
// newAccount URL. It returns the EAB key ID; binding it happens with the account.
func (s *Server) checkEAB(q *request, raw json.RawMessage) (string, error) {
	sig, err := jose.ParseSignedJSON(string(raw), eabAlgorithms)
	if err != nil || len(sig.Signatures) != 1 {
		return "", malformed("externalAccountBinding is not a JWS with one HS256 MAC")
	}
	h := sig.Signatures[0].Protected
	kid, url := h.KeyID, ""
	if u, ok := h.ExtraHeaders["url"].(string); ok {
		url = u
	}
	switch {
	case kid == "":
		return "", malformed("externalAccountBinding has no \"kid\"")
	case h.Nonce != "":
		return "", malformed("externalAccountBinding must not have a \"nonce\"")
	case url != q.url("new-account"):
		return "", malformed("externalAccountBinding \"url\" must be the newAccount URL")
	}
	k, err := s.db.GetACMEEABKey(q.ctx, q.prov.name, kid)
	if errors.Is(err, store.ErrNotFound) {
		return "", unauthorized("unknown external account key %q", kid)
	}
	if err != nil {
		return "", internal("reading the EAB key", err)
	}
	if k.BoundAccount != "" {
		return "", unauthorized("the external account key %q is already bound to an account", kid)
	}
	payload, err := sig.Verify(k.Key)
	if err != nil {
		return "", unauthorized("the externalAccountBinding MAC does not verify with key %q", kid)
	}
	var bound jose.JSONWebKey
	if err := bound.UnmarshalJSON(payload); err != nil {
		return "", malformed("the externalAccountBinding payload is not a JWK")
	}
	bk, err := newJWKKey(&bound)
	if err != nil || !hmac.Equal([]byte(bk.thumb), []byte(q.jwk.thumb)) {
		return "", unauthorized("the externalAccountBinding binds a different key than the account's")
	}
	return kid, nil
}

// EABKeyStore is where NewEABKey records a key (a part of Store).
type EABKeyStore interface {
	CreateACMEEABKey(ctx context.Context, k *store.ACMEEABKey) error
}

// NewEABKey creates an External Account Binding key for a provisioner: give the
// client its KID and base64url(Key) (lego --eab --kid K --hmac H).
func NewEABKey(ctx context.Context, db EABKeyStore, provisioner, note string, now func() time.Time) (*store.ACMEEABKey, error) {
	key := make([]byte, 32)
	rand.Read(key)
	k := &store.ACMEEABKey{KID: newID(), Provisioner: provisioner, Key: key, Note: note, CreatedAt: now().UTC()}
	if err := db.CreateACMEEABKey(ctx, k); err != nil {
		return nil, err
	}
	return k, nil
}

// EncodeEABKey renders an EAB key as clients take it: base64url without padding.
func EncodeEABKey(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }
