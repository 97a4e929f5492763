package acme

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"nixpki/internal/store"
)

// keyChange rolls the account over to a new key (RFC 8555 §7.3.5). The payload is
// the inner JWS, signed by the new key; golang.org/x/crypto/acme sends it as a JSON
// string holding the base64url of that JWS, which is accepted too.
func (s *Server) keyChange(q *request) (*response, error) {
	inner := q.payload
	var wrapped string
	if json.Unmarshal(inner, &wrapped) == nil {
		b, err := base64.RawURLEncoding.DecodeString(wrapped)
		if err != nil {
			return nil, malformed("the keyChange payload must be the inner JWS")
		}
		inner = b
	}
	sig, h, err := parseJWS(inner)
	if err != nil {
		return nil, err
	}
	if h.KID != "" {
		return nil, malformed("the inner JWS must carry the new key as \"jwk\"")
	}
	if h.URL != q.url("key-change") {
		return nil, malformed("the inner JWS \"url\" must be the keyChange URL, as the outer one")
	}
	newKey, err := headerKey(sig)
	if err != nil {
		return nil, err
	}
	payload, err := sig.Verify(newKey.key)
	if err != nil {
		return nil, malformed("the inner JWS signature does not verify with its \"jwk\"")
	}
	var p struct {
		Account string          `json:"account"`
		OldKey  json.RawMessage `json:"oldKey"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, malformed("the inner payload must be {\"account\", \"oldKey\"}: %s", jsonDetail(err))
	}
	if p.Account != q.accountURL(q.account.ID) {
		return nil, unauthorized("the inner payload names account %q, not the signer's", p.Account)
	}
	old, err := s.keys.get(p.OldKey)
	if err != nil {
		return nil, malformed("\"oldKey\" is not a public key in JWK form")
	}
	oldKey, err := newJWKKey(old)
	if err != nil || oldKey.thumb != q.account.Thumbprint {
		return nil, unauthorized("\"oldKey\" is not the account's current key")
	}
	if newKey.thumb == q.account.Thumbprint {
		return nil, malformed("the new key is the account's current key")
	}
	err = s.db.ChangeACMEAccountKey(q.ctx, q.account.ID, q.account.Thumbprint, newKey.thumb, newKey.json, nil)
	s.accounts.drop(q.account.ID)
	if errors.Is(err, store.ErrConflict) {
		e := acmeErr(http.StatusConflict, errMalformed, "another account already uses the new key")
		if other, err := s.db.GetACMEAccountByKey(q.ctx, q.prov.name, newKey.thumb); err == nil {
			e.Headers = http.Header{"Location": {q.accountURL(other.ID)}}
		}
		return nil, e
	}
	if err != nil {
		return nil, storeErr(err, "account")
	}
	s.log.Info("acme account key changed", "provisioner", q.prov.name, "account", q.account.ID)
	a := *q.account
	a.Thumbprint, a.JWK = newKey.thumb, newKey.json
	return q.accountResponse(http.StatusOK, &a), nil
}
