package gate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/x509util"
)

// trust holds what the gate knows of the PKI: the root, the Nix-signing
// intermediates and member certificates uploaded to it, and the newest CRLs.
type trust struct {
	v     *nixcert.Verifier
	mu    sync.RWMutex
	byKey map[string][]*x509.Certificate // member certificates by Nix key name
	known map[[32]byte]bool
	// verified caches chains that verified, until the next intermediate or CRL
	// (gen counts them); validity times are still checked at each use.
	gen      uint64
	verified map[[32]byte]*nixcert.Identity
}

func newTrust(root *x509.Certificate) *trust {
	return &trust{v: nixcert.NewVerifier(root), byKey: map[string][]*x509.Certificate{}, known: map[[32]byte]bool{},
		verified: map[[32]byte]*nixcert.Identity{}}
}

// changed drops cached verifications: an intermediate or a CRL arrived.
func (t *trust) changed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	clear(t.verified)
}

// verify is Verifier.Verify with a cache of chains that verified.
func (t *trust) verify(c *x509.Certificate, at time.Time) (*nixcert.Identity, error) {
	s := certSum(c)
	t.mu.RLock()
	id, gen := t.verified[s], t.gen
	t.mu.RUnlock()
	if id != nil && within(id.Chain, at) {
		return id, nil
	}
	id, err := t.v.Verify(c, nil, at)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.gen == gen {
		t.verified[s] = id
	}
	t.mu.Unlock()
	return id, nil
}

// within reports whether at lies in the validity of every certificate of chain.
func within(chain []*x509.Certificate, at time.Time) bool {
	for _, c := range chain {
		if at.Before(c.NotBefore) || at.After(c.NotAfter) {
			return false
		}
	}
	return true
}

func certSum(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

func certID(c *x509.Certificate) string {
	s := certSum(c)
	return hex.EncodeToString(s[:])
}

// addLeaf indexes a member certificate by its key name.
func (t *trust) addLeaf(c *x509.Certificate) bool {
	id, err := nixcert.ParseCertificate(c)
	if err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := certSum(c)
	if t.known[s] {
		return false
	}
	t.known[s] = true
	t.byKey[id.Constraints.KeyName] = append(t.byKey[id.Constraints.KeyName], c)
	return true
}

func (t *trust) certsFor(keyName string) []*x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return slices.Clone(t.byKey[keyName])
}

// findCert returns a member certificate by the hex SHA-256 of its DER.
func (t *trust) findCert(id string) *x509.Certificate {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, cs := range t.byKey {
		for _, c := range cs {
			if certID(c) == id {
				return c
			}
		}
	}
	return nil
}

// issuerOf returns the known intermediate that signed c.
func (t *trust) issuerOf(c *x509.Certificate) *x509.Certificate {
	for _, in := range t.v.Intermediates() {
		if bytes.Equal(c.RawIssuer, in.RawSubject) && c.CheckSignatureFrom(in) == nil {
			return in
		}
	}
	return nil
}

// usable checks that a member certificate may sign for this gate at `at`: it chains
// to the root through a Nix intermediate, is valid, not revoked, the CRL held for its
// issuer is fresh enough (fail closed), and its targets name the gate. The error is
// one line naming the certificate and the rule.
func (g *Gate) usable(c *x509.Certificate, at time.Time) (*nixcert.Identity, error) {
	id, err := g.trust.verify(c, at)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("nix certificate %s (%s, key %s)", id.Serial(), id.Constraints.Subject, id.Constraints.KeyName)
	issuer := id.Chain[1]
	this, ok := g.trust.v.CRLThisUpdate(issuer)
	if !ok {
		return nil, fmt.Errorf("%s: no CRL of %q held by the gate (it fails closed): upload one (nixpki nix push --crl F)", name, issuer.Subject.CommonName)
	}
	if max := g.Cfg.MaxCRLAge.D(); max > 0 && at.Sub(this) > max {
		return nil, fmt.Errorf("%s: the newest CRL of %q held was issued %s, more than max_crl_age %s ago (it fails closed): upload a fresh one: nixpki nix crl --dir CA --out nix.crl on the CA, then nixpki gate crl --gate URL nix.crl (or let the gate fetch it: crl_urls)", name, issuer.Subject.CommonName, this.UTC().Format(time.RFC3339), g.Cfg.MaxCRLAge.D())
	}
	if !id.AllowsTarget(g.Cfg.Name) {
		return nil, fmt.Errorf("%s: its targets (%s) do not include this gate %q", name, strings.Join(id.Constraints.Targets, ","), g.Cfg.Name)
	}
	return id, nil
}

// loadTrust fills the trust store from the database.
func (g *Gate) loadTrust(ctx context.Context) error {
	cas, leaves, err := g.db.allCerts(ctx)
	if err != nil {
		return err
	}
	for _, der := range cas {
		if c, err := x509.ParseCertificate(der); err == nil {
			g.trust.v.AddIntermediate(c)
		}
	}
	crls, err := g.db.allCRLs(ctx)
	if err != nil {
		return err
	}
	for _, der := range crls {
		if _, err := g.trust.v.AddCRL(der); err != nil {
			g.Log.Warn("stored CRL refused", "err", err)
		}
	}
	for _, der := range leaves {
		if c, err := x509.ParseCertificate(der); err == nil {
			g.trust.addLeaf(c)
		}
	}
	return nil
}

// crlSkew is how far ahead of the gate's clock a CRL's thisUpdate may be.
const crlSkew = 5 * time.Minute

// Upload limits of the nixpki endpoints.
const (
	maxCertsBody = 1 << 20
	maxCRLBody   = 16 << 20
)

// parseUpload splits an uploaded PEM bundle (or a DER CRL) into certificates and
// CRLs. Anything else is an error: uploads are small and exact.
func parseUpload(data []byte) (certs []*x509.Certificate, crls [][]byte, err error) {
	if len(data) > 0 && data[0] == 0x30 { // DER: a CRL
		if _, err := x509.ParseRevocationList(data); err != nil {
			return nil, nil, fmt.Errorf("DER CRL: %w", err)
		}
		return nil, [][]byte{data}, nil
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			if len(certs) == 4*nixcert.MaxChainCerts {
				return nil, nil, fmt.Errorf("more than %d certificates", 4*nixcert.MaxChainCerts)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		case "X509 CRL":
			if len(crls) == 8 {
				return nil, nil, errors.New("more than 8 CRLs")
			}
			if _, err := x509.ParseRevocationList(b.Bytes); err != nil {
				return nil, nil, fmt.Errorf("CRL %d: %w", len(crls)+1, err)
			}
			crls = append(crls, b.Bytes)
		default:
			return nil, nil, fmt.Errorf("unexpected PEM block %q: upload CERTIFICATE and X509 CRL blocks only", b.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, errors.New("data that is not PEM after the last block")
	}
	if len(certs) == 0 && len(crls) == 0 {
		return nil, nil, errors.New("no PEM CERTIFICATE or X509 CRL block found")
	}
	return certs, crls, nil
}

// Upload takes certificates (intermediates and member certificates) and CRLs, as
// `nixpki nix push` sends them. It is self-authenticating: an intermediate is kept
// if the root signed it for Nix signing, a member certificate if it chains to the
// root, a CRL if a known intermediate signed it and it is newer than the one held.
// It answers one line per member certificate saying whether it may sign for this
// gate now; any that may not makes the answer 403 (the certificate is kept all the
// same: its signatures are judged again at each admission).
func (g *Gate) Upload(ctx context.Context, data []byte, remote string) (string, error) {
	certs, crls, err := parseUpload(data)
	if err != nil {
		g.reject(ctx, "", "", "upload refused: "+err.Error(), remote)
		return "", rejectErr(Invalid, "upload refused: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.Now()
	var lines []string
	var leaves []*x509.Certificate
	for _, c := range certs {
		if !c.IsCA {
			leaves = append(leaves, c)
			continue
		}
		if c.Equal(g.trust.v.Root()) {
			continue
		}
		if err := g.addIntermediate(ctx, c); err != nil {
			lines = append(lines, fmt.Sprintf("intermediate %q refused: %v", c.Subject.CommonName, err))
		}
	}
	for _, der := range crls {
		msg, err := g.addCRLLocked(ctx, der, remote)
		if err != nil {
			return "", err
		}
		lines = append(lines, msg)
	}
	var refused Rejection // CannotSign over Invalid: the upload's worst
	for _, c := range leaves {
		msg, err := g.addMember(ctx, c, now, remote)
		if err != nil {
			var rj *rejected
			if !errors.As(err, &rj) {
				return "", err
			}
			if refused != CannotSign {
				refused = rj.why
			}
			msg = rj.msg
		}
		lines = append(lines, msg)
	}
	out := strings.Join(lines, "\n")
	if refused != 0 {
		return "", rejectErr(refused, "%s", out)
	}
	return out, nil
}

func (g *Gate) addIntermediate(ctx context.Context, c *x509.Certificate) error {
	before := len(g.trust.v.Intermediates())
	if err := g.trust.v.AddIntermediate(c); err != nil {
		return err
	}
	if len(g.trust.v.Intermediates()) == before {
		return nil
	}
	g.trust.changed()
	if err := g.record("intermediate", map[string]string{"subject": c.Subject.CommonName, "sha256": certID(c)}); err != nil {
		return err
	}
	_, err := g.db.addCert(ctx, certSum(c), c.Raw, true, g.Now())
	return err
}

// addMember keeps a genuine member certificate and says whether it may sign here.
func (g *Gate) addMember(ctx context.Context, c *x509.Certificate, now time.Time, remote string) (string, error) {
	serial := x509util.SerialHex(c.SerialNumber)
	// Genuine: a Nix certificate signed by a Nix-signing intermediate the root signed.
	// Validity and revocation are judged by usable, now and at each admission, so an
	// expired or revoked certificate is still recognised and its signatures refused
	// for the right reason.
	id, err := nixcert.ParseCertificate(c)
	if err == nil && g.trust.issuerOf(c) == nil {
		err = fmt.Errorf("it is not signed by a Nix-signing intermediate of root %q known to the gate (upload the leaf with its intermediate)", g.trust.v.Root().Subject.CommonName)
	}
	if err != nil {
		msg := fmt.Sprintf("certificate %s refused: %v", strings.ToUpper(serial), err)
		g.reject(ctx, "", "", msg, remote)
		return "", rejectErr(Invalid, "%s", msg)
	}
	if g.trust.addLeaf(c) {
		if err := g.record("certificate", map[string]any{
			"serial": serial, "subject": id.Constraints.Subject, "key": id.Constraints.KeyName,
			"targets": id.Constraints.Targets, "scope": id.Constraints.Scope.String(),
			"not_before": c.NotBefore.UTC(), "not_after": c.NotAfter.UTC(), "issuer": c.Issuer.CommonName, "sha256": certID(c),
		}); err != nil {
			return "", err
		}
		if _, err := g.db.addCert(ctx, certSum(c), c.Raw, false, now); err != nil {
			return "", err
		}
	}
	if _, err := g.usable(c, now); err != nil {
		return "", rejectErr(CannotSign, "certificate kept, but it cannot sign for gate %s: %v", g.Cfg.Name, err)
	}
	return fmt.Sprintf("certificate %s (%s, key %s, scope %s) may sign for gate %s until %s",
		strings.ToUpper(serial), id.Constraints.Subject, id.Constraints.KeyName, id.Constraints.Scope, g.Cfg.Name, c.NotAfter.UTC().Format(time.RFC3339)), nil
}

// AddCRL takes one CRL (DER or PEM) as PUT /nixpki/crl does.
func (g *Gate) AddCRL(ctx context.Context, data []byte, remote string) (string, error) {
	_, crls, err := parseUpload(data)
	if err == nil && len(crls) != 1 {
		err = errors.New("expected exactly one CRL")
	}
	if err != nil {
		g.reject(ctx, "", "", "CRL refused: "+err.Error(), remote)
		return "", rejectErr(Invalid, "CRL refused: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addCRLLocked(ctx, crls[0], remote)
}

// addCRLLocked adds a CRL if newer and quarantines the paths it leaves short of
// signatures, before returning: from then on they are not served. A CRL of the root
// revokes intermediates, and so every certificate they issued.
func (g *Gate) addCRLLocked(ctx context.Context, der []byte, remote string) (string, error) {
	list, _ := x509.ParseRevocationList(der)
	number := "?"
	if list.Number != nil {
		number = list.Number.String()
	}
	refuse := func(why Rejection, format string, args ...any) (string, error) {
		msg := fmt.Sprintf("CRL number %s of %q refused: ", number, list.Issuer.CommonName) + fmt.Sprintf(format, args...)
		g.reject(ctx, "", "", msg, remote)
		return "", rejectErr(why, "%s", msg)
	}
	// A CRL dated ahead would stay "newest" until its date, so that no later CRL
	// replaced it and max_crl_age never tripped: revocation frozen for its issuer.
	if now := g.Now(); list.ThisUpdate.After(now.Add(crlSkew)) {
		return refuse(Invalid, "its thisUpdate %s is ahead of the gate's clock (%s) by more than %s: check the CA's clock and issue it again",
			list.ThisUpdate.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), crlSkew)
	}
	before := g.revokedCerts()
	accepted, err := g.trust.v.AddCRL(der)
	if err != nil {
		g.reject(ctx, "", "", err.Error(), remote)
		return "", rejectErr(Invalid, "%v", err)
	}
	if !accepted {
		held, ok := g.trust.v.CRL(g.trust.v.IssuedBy(der))
		if ok && list.Number != nil && held.Number != nil && list.Number.Cmp(held.Number) > 0 {
			// A higher number that cannot replace the held CRL: the pusher must see it.
			return refuse(Conflict, "it is dated %s, before the CRL number %s held (%s): a newer CRL must not be older; issue it again",
				list.ThisUpdate.UTC().Format(time.RFC3339), held.Number, held.ThisUpdate.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("CRL number %s of %q is not newer than the one held: kept the held one", number, list.Issuer.CommonName), nil
	}
	g.trust.changed()
	issuer := g.trust.v.IssuedBy(der) // an intermediate, or the root revoking intermediates
	var revoked []string
	for _, e := range list.RevokedCertificateEntries {
		revoked = append(revoked, x509util.SerialHex(e.SerialNumber))
	}
	if err := g.record("crl", map[string]any{"issuer": list.Issuer.CommonName, "number": number,
		"this_update": list.ThisUpdate.UTC(), "revoked": revoked, "from": remote}); err != nil {
		return "", err
	}
	if err := g.db.putCRL(ctx, certSum(issuer), der, g.Now()); err != nil {
		return "", err
	}
	newly := map[string]bool{}
	for c := range g.revokedCerts() {
		if !before[c] {
			newly[c] = true
		}
	}
	q, err := g.quarantine(ctx, newly)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("CRL number %s of %q accepted (%d revoked); %d paths quarantined", number, list.Issuer.CommonName, len(revoked), q), nil
}

// sigVerdict judges one signature of a path: which certified identity made it, or why
// it does not count (one clause naming the key and the rule).
func (g *Gate) sigVerdict(sig signing.Signature, fp, storePath string, contentAddressed bool, now time.Time) (Signer, string) {
	certs := g.trust.certsFor(sig.Name)
	if len(certs) == 0 {
		return Signer{}, fmt.Sprintf("key %s: unknown key: no certificate for it was uploaded to the gate", sig.Name)
	}
	var why []string
	verified := false
	for _, c := range certs {
		pub, ok := c.PublicKey.(ed25519.PublicKey)
		if !ok || !(signing.PublicKey{Name: sig.Name, Key: pub}).Verify(fp, sig) {
			continue
		}
		verified = true
		id, err := g.usable(c, now)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if !id.AllowsPath(storePath, contentAddressed) {
			kind := "an input-addressed"
			if contentAddressed {
				kind = "a content-addressed"
			}
			why = append(why, fmt.Sprintf("nix certificate %s (%s, key %s): its scope %q does not allow %s path %s", id.Serial(), id.Constraints.Subject, sig.Name, id.Constraints.Scope, kind, storePath))
			continue
		}
		return Signer{Subject: id.Constraints.Subject, KeyName: sig.Name, Serial: id.Serial(), Cert: certID(c), Sig: sig.String()}, ""
	}
	if !verified {
		return Signer{}, fmt.Sprintf("key %s: the signature does not verify with any of its %d certified keys (altered narinfo or NAR)", sig.Name, len(certs))
	}
	return Signer{}, fmt.Sprintf("key %s: %s", sig.Name, strings.Join(why, "; "))
}
