package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"nixpki/internal/keys"
	"nixpki/internal/store"
)

// The JWS algorithms accepted for requests (RFC 8555 §6.2). none and MACs are refused.
var (
	algorithms     = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.EdDSA}
	algorithmNames = []string{"ES256", "ES384", "RS256", "EdDSA"}
)

// flatJWS is the flattened JSON serialization ACME requires (RFC 8555 §6.2).
type flatJWS struct {
	Protected  string          `json:"protected"`
	Payload    *string         `json:"payload"`
	Signature  string          `json:"signature"`
	Header     json.RawMessage `json:"header"`
	Signatures json.RawMessage `json:"signatures"`
}

// protectedHeader holds the ACME fields of a JWS protected header.
type protectedHeader struct {
	Alg   string          `json:"alg"`
	KID   string          `json:"kid"`
	JWK   json.RawMessage `json:"jwk"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	Crit  json.RawMessage `json:"crit"`
}

// jwkKey is a request's public key with its RFC 7638 thumbprint.
type jwkKey struct {
	key   *jose.JSONWebKey
	thumb string
	json  []byte
}

// parseJWS checks a request body's JWS envelope and protected header and parses it
// with go-jose; the signature is not verified yet.
func parseJWS(body []byte) (*jose.JSONWebSignature, *protectedHeader, error) {
	_, h, err := parseEnvelope(body)
	if err != nil {
		return nil, nil, err
	}
	sig, err := parseJose(body)
	if err != nil {
		return nil, nil, err
	}
	return sig, h, nil
}

// parseJose parses a JWS whose envelope parseEnvelope accepted with go-jose.
func parseJose(body []byte) (*jose.JSONWebSignature, error) {
	sig, err := jose.ParseSignedJSON(string(body), algorithms)
	if err != nil {
		return nil, malformed("the JWS does not parse: %s", strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
	}
	if len(sig.Signatures) != 1 {
		return nil, malformed("the JWS must have exactly one signature")
	}
	return sig, nil
}

// parseEnvelope checks a request body's JWS envelope and protected header.
func parseEnvelope(body []byte) (*flatJWS, *protectedHeader, error) {
	var f flatJWS
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, nil, malformed("the body is not a JWS in flattened JSON serialization: %s", jsonDetail(err))
	}
	switch {
	case f.Signatures != nil:
		return nil, nil, malformed("use the flattened JSON serialization with one signature, not \"signatures\"")
	case f.Header != nil:
		return nil, nil, malformed("the JWS must not have an unprotected header")
	case f.Protected == "" || f.Payload == nil:
		return nil, nil, malformed("the JWS needs \"protected\", \"payload\" and \"signature\"")
	}
	raw, err := base64.RawURLEncoding.DecodeString(f.Protected)
	if err != nil {
		return nil, nil, malformed("the protected header is not base64url")
	}
	var h protectedHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, nil, malformed("the protected header is not the expected JSON object: %s", jsonDetail(err))
	}
	if !allowedAlg(h.Alg) {
		return nil, nil, acmeErr(http.StatusBadRequest, errBadSignatureAlgorithm, "JWS algorithm %q is not supported: use one of %s", h.Alg, strings.Join(algorithmNames, ", "))
	}
	if f.Signature == "" {
		return nil, nil, malformed("the JWS has no signature")
	}
	if (h.KID != "") == (len(h.JWK) > 0) {
		return nil, nil, malformed("the protected header must have exactly one of \"jwk\" and \"kid\"")
	}
	if h.URL == "" {
		return nil, nil, malformed("the protected header has no \"url\"")
	}
	return &f, &h, nil
}

// verifyFlat verifies a kid-signed request's signature with the account key directly
// (RFC 7515 §5.2), without go-jose's second parse of the body: the signing input is
// the protected header as sent, ".", the payload in canonical base64url — what
// go-jose signs and verifies — and the algorithm must match the key (ES256 P-256,
// ES384 P-384, RS256 RSA, EdDSA Ed25519). A "crit" header is refused, as go-jose
// does. It returns the payload, or ok=false.
func verifyFlat(f *flatJWS, h *protectedHeader, key any) (payload []byte, ok bool) {
	if h.Crit != nil {
		return nil, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(*f.Payload, "="))
	if err != nil {
		return nil, false
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(f.Signature, "="))
	if err != nil {
		return nil, false
	}
	input := make([]byte, 0, len(f.Protected)+1+base64.RawURLEncoding.EncodedLen(len(payload)))
	input = append(input, f.Protected...)
	input = append(input, '.')
	input = base64.RawURLEncoding.AppendEncode(input, payload)
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		switch {
		case h.Alg == "ES256" && k.Curve == elliptic.P256() && len(sig) == 64:
			d := sha256.Sum256(input)
			digest = d[:]
		case h.Alg == "ES384" && k.Curve == elliptic.P384() && len(sig) == 96:
			d := sha512.Sum384(input)
			digest = d[:]
		default:
			return nil, false
		}
		n := len(sig) / 2
		r, s := new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])
		return payload, ecdsa.Verify(k, digest, r, s)
	case *rsa.PublicKey:
		if h.Alg != "RS256" {
			return nil, false
		}
		d := sha256.Sum256(input)
		return payload, rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig) == nil
	case ed25519.PublicKey:
		if h.Alg != "EdDSA" {
			return nil, false
		}
		return payload, ed25519.Verify(k, input, sig)
	}
	return nil, false
}

func allowedAlg(a string) bool {
	for _, n := range algorithmNames {
		if a == n {
			return true
		}
	}
	return false
}

// headerKey returns the public key of a jwk-signed JWS, checked for type and size.
func headerKey(sig *jose.JSONWebSignature) (*jwkKey, error) {
	k := sig.Signatures[0].Protected.JSONWebKey
	if k == nil || !k.Valid() || !k.IsPublic() {
		return nil, acmeErr(http.StatusBadRequest, errBadPublicKey, "the \"jwk\" header is not a valid public key")
	}
	return newJWKKey(k)
}

func newJWKKey(k *jose.JSONWebKey) (*jwkKey, error) {
	if err := checkAccountKey(k.Key); err != nil {
		return nil, err
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, acmeErr(http.StatusBadRequest, errBadPublicKey, "cannot compute the key's thumbprint: %v", err)
	}
	b, err := k.MarshalJSON()
	if err != nil {
		return nil, acmeErr(http.StatusBadRequest, errBadPublicKey, "cannot encode the key: %v", err)
	}
	return &jwkKey{key: k, thumb: base64.RawURLEncoding.EncodeToString(tp), json: b}, nil
}

// checkAccountKey accepts RSA of at least 2048 bits, ECDSA P-256 and P-384, Ed25519.
func checkAccountKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return acmeErr(http.StatusBadRequest, errBadPublicKey, "the account key is %s: RSA account keys need at least 2048 bits", keys.Describe(k))
	case ed25519.PublicKey:
		return nil
	}
	return acmeErr(http.StatusBadRequest, errBadPublicKey, "the account key is %s: use ECDSA P-256 or P-384, RSA of at least 2048 bits, or Ed25519", keys.Describe(pub))
}

// verify authenticates a POST: media type, size, JWS envelope, key (account or
// header), nonce, signature, then spends the nonce and checks the url. On success q
// has the payload and the account or key.
func (s *Server) verify(q *request, kind jwsKind) error {
	mt, _, _ := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if mt != "application/jose+json" {
		return acmeErr(http.StatusUnsupportedMediaType, errMalformed, "requests must be application/jose+json, not %q", q.r.Header.Get("Content-Type"))
	}
	body, err := readBody(q.r.Body, q.prov.maxBody)
	if err != nil {
		return err
	}
	f, h, err := parseEnvelope(body)
	if err != nil {
		return err
	}
	var sig *jose.JSONWebSignature // go-jose's parse, for jwk-signed requests only
	if h.KID == "" {
		if sig, err = parseJose(body); err != nil {
			return err
		}
	}
	var key *jose.JSONWebKey
	if h.KID != "" {
		if kind == byJWK {
			return malformed("this request must be signed with a \"jwk\", not a \"kid\"")
		}
		if q.account, err = s.accountByKID(q, h.KID); err != nil {
			return err
		}
		if key, err = s.keys.get(q.account.JWK); err != nil {
			return internal("parsing the account key", err)
		}
	} else {
		if kind == byKID {
			return malformed("this request must be signed with the account key, named by \"kid\"")
		}
		if q.jwk, err = headerKey(sig); err != nil {
			return err
		}
		key = q.jwk.key
	}
	if q.nonce, err = s.nonces.check(h.Nonce, q.prov.nonceLife); err != nil {
		return err
	}
	if q.account != nil {
		// The account may come from the cache: the nonce is spent only if the account
		// is still valid with this key, checked in the statement that spends it; the
		// request goes on only then.
		q.nonce.AccountID, q.nonce.Thumbprint = q.account.ID, q.account.Thumbprint
	}
	if sig == nil {
		var ok bool
		if q.payload, ok = verifyFlat(f, h, key.Key); !ok {
			err = errors.New("bad signature")
		}
	} else {
		q.payload, err = sig.Verify(key)
	}
	if err != nil {
		return malformed("the JWS signature does not verify with the %s", map[bool]string{true: "account key", false: "\"jwk\" key"}[h.KID != ""])
	}
	// The nonce is spent now, before any check that could refuse the request (RFC 8555
	// §6.5): a refused request cannot be replayed later, when it might succeed. A JWS
	// that does not verify spends nothing: no replay of it can ever succeed.
	if err := s.spender.spend(q.ctx, q.nonce); err != nil {
		return nonceError(err)
	}
	if want := q.base + q.r.URL.RequestURI(); h.URL != want {
		return unauthorized("the JWS \"url\" %q is not the URL requested, %q", h.URL, want)
	}
	return nil
}

// accountByKID resolves a kid: an account URL of this provisioner, of a valid account.
func (s *Server) accountByKID(q *request, kid string) (*store.ACMEAccount, error) {
	id, ok := strings.CutPrefix(kid, q.url("account")+"/")
	if !ok {
		// The account URL as the client got it through another of the CA's names.
		if u, err := url.Parse(kid); err == nil && u.RawQuery == "" && u.Fragment == "" && u.Scheme+"://"+u.Host+u.Path == kid {
			if _, own := s.ownHost(u.Host, u.Scheme, portOf(q.base)); own && u.Scheme == s.scheme {
				id, ok = strings.CutPrefix(u.Path, "/acme/"+q.prov.name+"/account/")
			}
		}
	}
	if !ok || id == "" || strings.Contains(id, "/") {
		return nil, acmeErr(http.StatusBadRequest, errAccountDoesNotExist, "kid %q is not an account URL of this directory", kid)
	}
	if a := s.accounts.get(id); a != nil && a.Provisioner == q.prov.name {
		return a, nil
	}
	a, err := s.db.GetACMEAccount(q.ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && a.Provisioner != q.prov.name) {
		return nil, acmeErr(http.StatusBadRequest, errAccountDoesNotExist, "no account %q", kid)
	}
	if err != nil {
		return nil, internal("reading the account", err)
	}
	if a.Status != "valid" {
		return nil, unauthorized("account %s is %s", kid, a.Status)
	}
	s.accounts.put(a)
	return a, nil
}

// accountCache keeps valid accounts by ID, so that a request's account costs no read.
// A cached account may be stale — deactivated or rekeyed by another server on the
// database — but the request's nonce is spent only if the account is still valid
// with the cached key (store.Nonce.AccountID), before the request goes on. So a
// stale entry never lets a request through; it is dropped on any failed request and
// on this server's own account changes. Handlers that show the account itself
// (contacts) read it from the database.
type accountCache struct {
	mu sync.RWMutex
	m  map[string]*store.ACMEAccount
}

const accountCacheMax = 8192

func (c *accountCache) get(id string) *store.ACMEAccount {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[id]
}

func (c *accountCache) put(a *store.ACMEAccount) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= accountCacheMax {
		c.m = map[string]*store.ACMEAccount{}
	}
	c.m[a.ID] = a
	c.mu.Unlock()
}

func (c *accountCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// keyCache keeps parsed account keys by their stored JWK text.
type keyCache struct {
	mu sync.RWMutex
	m  map[string]*jose.JSONWebKey
}

const keyCacheMax = 4096

func (c *keyCache) get(jwk []byte) (*jose.JSONWebKey, error) {
	c.mu.RLock()
	k := c.m[string(jwk)]
	c.mu.RUnlock()
	if k != nil {
		return k, nil
	}
	k = new(jose.JSONWebKey)
	if err := k.UnmarshalJSON(jwk); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= keyCacheMax {
		c.m = map[string]*jose.JSONWebKey{}
	}
	c.m[string(jwk)] = k
	c.mu.Unlock()
	return k, nil
}
