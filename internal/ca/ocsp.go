package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// The OCSP responder (RFC 6960) is written here rather than with x/crypto/ocsp, which
// can neither read request extensions nor write response extensions: the request's
// nonce (RFC 8954) is echoed, and each CertID is answered with the hash it was asked
// with (SHA-1, SHA-256, SHA-384 or SHA-512).

var (
	oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
)

// ocspHashes maps CertID hash algorithm OIDs to hashes.
var ocspHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}, crypto.SHA1},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}, crypto.SHA256},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}, crypto.SHA384},
	{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}, crypto.SHA512},
}

const (
	// maxOCSPCertIDs bounds the certificates one request may ask about (each is a
	// database read); clients ask about one.
	maxOCSPCertIDs = 16
	// maxOCSPNonce is RFC 8954's limit; longer nonces are refused.
	maxOCSPNonce = 32
)

type ocspCertID struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	NameHash      []byte
	KeyHash       []byte
	Serial        *big.Int
}

type ocspSingleRequest struct {
	CertID ocspCertID
	Exts   []pkix.Extension `asn1:"explicit,tag:0,optional"`
}

type ocspTBSRequest struct {
	Version       int           `asn1:"explicit,tag:0,default:0,optional"`
	RequestorName asn1.RawValue `asn1:"explicit,tag:1,optional"`
	List          []ocspSingleRequest
	Exts          []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

type ocspRequestASN struct {
	TBS       ocspTBSRequest
	Signature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

// ocspRequest is a parsed request: its CertIDs and its nonce extension, if any.
type ocspRequest struct {
	certIDs []ocspCertID
	hashes  []crypto.Hash
	nonce   *pkix.Extension
}

// parseOCSPRequest reads a DER OCSP request. Every CertID must use one of the four
// hashes; a nonce must hold 1 to 32 bytes.
func parseOCSPRequest(der []byte) (*ocspRequest, error) {
	var r ocspRequestASN
	rest, err := asn1.Unmarshal(der, &r)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("not a DER OCSP request")
	}
	if r.TBS.Version != 0 {
		return nil, fmt.Errorf("OCSP request version %d: only v1 exists", r.TBS.Version+1)
	}
	if n := len(r.TBS.List); n == 0 || n > maxOCSPCertIDs {
		return nil, fmt.Errorf("the request asks about %d certificates: ask about 1 to %d", n, maxOCSPCertIDs)
	}
	out := &ocspRequest{}
	for _, sr := range r.TBS.List {
		h := ocspHashOf(sr.CertID.HashAlgorithm.Algorithm)
		if h == 0 {
			return nil, fmt.Errorf("CertID hash %v: use SHA-1, SHA-256, SHA-384 or SHA-512", sr.CertID.HashAlgorithm.Algorithm)
		}
		if sr.CertID.Serial == nil || sr.CertID.Serial.Sign() <= 0 {
			return nil, errors.New("CertID serial must be positive")
		}
		out.certIDs = append(out.certIDs, sr.CertID)
		out.hashes = append(out.hashes, h)
	}
	for i, e := range r.TBS.Exts {
		if !e.Id.Equal(oidOCSPNonce) {
			continue
		}
		var nonce []byte
		if rest, err := asn1.Unmarshal(e.Value, &nonce); err != nil || len(rest) > 0 || len(nonce) == 0 || len(nonce) > maxOCSPNonce {
			return nil, errors.New("the nonce extension must hold an OCTET STRING of 1 to 32 bytes")
		}
		out.nonce = &r.TBS.Exts[i]
	}
	return out, nil
}

func ocspHashOf(oid asn1.ObjectIdentifier) crypto.Hash {
	for _, h := range ocspHashes {
		if h.oid.Equal(oid) {
			return h.hash
		}
	}
	return 0
}

// matches says whether a CertID names the issuer (both hashes, with its algorithm).
func (id *ocspCertID) matches(h crypto.Hash, issuer *x509.Certificate) bool {
	sum := func(b []byte) string {
		d := h.New()
		d.Write(b)
		return string(d.Sum(nil))
	}
	return sum(issuer.RawSubject) == string(id.NameHash) && sum(rawSubjectPublicKey(issuer)) == string(id.KeyHash)
}

type ocspRevokedInfo struct {
	RevokedAt time.Time       `asn1:"generalized"`
	Reason    asn1.Enumerated `asn1:"explicit,tag:0,optional"`
}

type ocspSingleResponse struct {
	CertID     ocspCertID
	Good       asn1.Flag       `asn1:"tag:0,optional"`
	Revoked    ocspRevokedInfo `asn1:"tag:1,optional"`
	Unknown    asn1.Flag       `asn1:"tag:2,optional"`
	ThisUpdate time.Time       `asn1:"generalized"`
	NextUpdate time.Time       `asn1:"generalized,explicit,tag:0,optional"`
}

type ocspResponseData struct {
	ResponderID asn1.RawValue
	ProducedAt  time.Time `asn1:"generalized"`
	Responses   []ocspSingleResponse
	Exts        []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type ocspBasicResponse struct {
	TBS       asn1.RawValue
	Algorithm pkix.AlgorithmIdentifier
	Signature asn1.BitString
}

type ocspResponseBytes struct {
	Type     asn1.ObjectIdentifier
	Response []byte
}

type ocspResponseASN struct {
	Status asn1.Enumerated
	Bytes  ocspResponseBytes `asn1:"explicit,tag:0,optional"`
}

// The signature algorithms of the intermediates' key types (keys.SignatureAlgorithm).
var ocspSigAlgs = map[x509.SignatureAlgorithm]struct {
	id   pkix.AlgorithmIdentifier
	hash crypto.Hash
}{
	x509.ECDSAWithSHA256: {pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}}, crypto.SHA256},
	x509.ECDSAWithSHA384: {pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}}, crypto.SHA384},
	x509.SHA256WithRSA:   {pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}, crypto.SHA256},
	x509.PureEd25519:     {pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 3, 101, 112}}, 0},
}

// OCSP answers a DER OCSP request (RFC 6960) for either intermediate, signed by that
// intermediate itself, echoing the request's nonce (RFC 8954) and each CertID as
// asked. A malformed request gets a malformedRequest response, one about a
// certificate of another issuer (or of two issuers) an "unauthorized" one.
func (c *CA) OCSP(ctx context.Context, reqDER []byte) ([]byte, error) {
	req, err := parseOCSPRequest(reqDER)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse, nil
	}
	var iss *Issuer
	for _, cand := range []*Issuer{c.TLS, c.Nix} {
		if req.certIDs[0].matches(req.hashes[0], cand.Cert) {
			iss = cand
		}
	}
	if iss == nil {
		return ocsp.UnauthorizedErrorResponse, nil
	}
	now := c.Now().UTC().Truncate(time.Second)
	data := ocspResponseData{ProducedAt: now}
	for i, id := range req.certIDs {
		if !id.matches(req.hashes[i], iss.Cert) {
			return ocsp.UnauthorizedErrorResponse, nil
		}
		single := ocspSingleResponse{
			CertID: id, ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		}
		rec, err := c.Certs.GetCert(ctx, x509util.SerialHex(id.Serial))
		switch {
		case errors.Is(err, store.ErrNotFound), err == nil && rec.Issuer != iss.Name:
			single.Unknown = true
		case err != nil:
			return ocsp.InternalErrorErrorResponse, err
		case rec.Revoked():
			single.Revoked = ocspRevokedInfo{RevokedAt: rec.RevokedAt.UTC(), Reason: asn1.Enumerated(rec.Reason)}
		default:
			single.Good = true
		}
		data.Responses = append(data.Responses, single)
	}
	if req.nonce != nil {
		data.Exts = []pkix.Extension{{Id: oidOCSPNonce, Value: req.nonce.Value}}
	}
	der, err := signOCSP(iss, &data)
	if err != nil {
		return ocsp.InternalErrorErrorResponse, err
	}
	return der, nil
}

// signOCSP signs the response data as the issuer (responder ID by key hash).
func signOCSP(iss *Issuer, data *ocspResponseData) ([]byte, error) {
	keyHash := sha1.Sum(rawSubjectPublicKey(iss.Cert)) // RFC 6960 §4.2.1: SHA-1 of the key
	kh, err := asn1.Marshal(keyHash[:])
	if err != nil {
		return nil, err
	}
	data.ResponderID = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, IsCompound: true, Bytes: kh}
	tbs, err := asn1.Marshal(*data)
	if err != nil {
		return nil, err
	}
	alg, ok := ocspSigAlgs[keys.SignatureAlgorithm(iss.KeyType)]
	if !ok {
		return nil, fmt.Errorf("no OCSP signature algorithm for %s keys", iss.KeyType)
	}
	msg := tbs
	if alg.hash != 0 {
		h := alg.hash.New()
		h.Write(tbs)
		msg = h.Sum(nil)
	}
	sig, err := iss.Signer.Sign(rand.Reader, msg, alg.hash)
	if err != nil {
		return nil, fmt.Errorf("signing the OCSP response: %w", err)
	}
	basic, err := asn1.Marshal(ocspBasicResponse{TBS: asn1.RawValue{FullBytes: tbs}, Algorithm: alg.id, Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(ocspResponseASN{Status: asn1.Enumerated(ocsp.Success), Bytes: ocspResponseBytes{Type: oidOCSPBasic, Response: basic}})
}
