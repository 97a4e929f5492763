package gate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// judgement is what the gate finds about a narinfo's signatures and references.
type judgement struct {
	signers []Signer // counted: one per distinct certified subject
	refused []string // why the other signatures do not count
	needed  int
	rule    string
	waiting []string // references not admitted yet (pending or quarantined)
	missing []string // references the gate does not hold at all
	caNote  string   // why a CA field does not count (the content does not match it)
}

// judge evaluates sigs over ni's fingerprint at now.
func (g *Gate) judge(ctx context.Context, d *db, ni *narinfo.NarInfo, sigs []signing.Signature, contentAddressed bool, now time.Time) (judgement, error) {
	var j judgement
	j.needed, j.rule = g.Cfg.SigsNeededFor(ni.StorePath)
	fp, err := ni.Fingerprint()
	if err != nil {
		return j, err
	}
	subjects := map[string]bool{}
	for _, s := range sigs {
		if s.Name == g.Key.Name {
			continue // the gate's own signature is added when serving
		}
		signer, why := g.sigVerdict(s, fp, ni.StorePath, contentAddressed, now)
		if why != "" {
			j.refused = append(j.refused, why)
			continue
		}
		if !subjects[signer.Subject] {
			subjects[signer.Subject] = true
			j.signers = append(j.signers, signer)
		}
	}
	self := ni.StorePath[strings.LastIndexByte(ni.StorePath, '/')+1:]
	// The closures of the references are walked only once the path has its own
	// signatures (it waits for those first): a threshold covers the whole closure.
	walk := j.needed > 1 && len(j.signers) >= j.needed
	usable := map[string]bool{} // certificate → usable now, for this judgement
	seen := map[string]bool{}   // paths walked (closures overlap)
	var refs []string
	for _, r := range ni.References {
		if r != self {
			refs = append(refs, r)
		}
	}
	cands, err := refCandidates(ctx, d, refs)
	if err != nil {
		return j, err
	}
	for _, r := range refs {
		rec, st := refState(r, cands)
		switch st {
		case StateAdmitted:
		case "":
			j.missing = append(j.missing, r)
			continue
		default:
			j.waiting = append(j.waiting, r+" ("+st+")")
			continue
		}
		if walk {
			short, err := g.closureShort(ctx, d, rec, j.needed, usable, seen, now)
			if err != nil {
				return j, err
			}
			if short != "" {
				j.waiting = append(j.waiting, short)
			}
		}
	}
	return j, nil
}

// refCandidates looks up the candidates of references, given by their base names
// ("<hash>-<name>"), in one statement: by hash part, for refState.
func refCandidates(ctx context.Context, d *db, refs []string) (map[string][]PathRec, error) {
	hashes := make([]string, len(refs))
	for i, r := range refs {
		hashes[i] = storepath.HashPart(r)
	}
	return d.candidatesOf(ctx, hashes)
}

// refState finds the candidate of a reference, given by its base name (the whole
// name must match, not the hash part only), among cands (refCandidates): the
// admitted one if any, and the best state among them: admitted, pending,
// quarantined, or "" when the gate does not hold it.
func refState(base string, cands map[string][]PathRec) (*PathRec, string) {
	cs := cands[storepath.HashPart(base)]
	best := ""
	for i, c := range cs {
		if c.StorePath[strings.LastIndexByte(c.StorePath, '/')+1:] != base {
			continue
		}
		switch {
		case c.State == StateAdmitted:
			return &cs[i], StateAdmitted
		case c.State == StatePending || best == "":
			best = c.State
		}
	}
	return nil, best
}

// validSigners counts the distinct subjects among a path's recorded signers whose
// certificates are still usable at now (known, unexpired, unrevoked, for this gate,
// with a fresh CRL). Their signatures and scopes were checked when recorded, and an
// admitted path's narinfo does not change.
func (g *Gate) validSigners(rec *PathRec, usable map[string]bool, now time.Time) int {
	subjects := map[string]bool{}
	for _, s := range rec.Signers {
		ok, known := usable[s.Cert]
		if !known {
			c := g.trust.findCert(s.Cert)
			if c != nil {
				_, err := g.usable(c, now)
				ok = err == nil
			}
			usable[s.Cert] = ok
		}
		if ok {
			subjects[s.Subject] = true
		}
	}
	return len(subjects)
}

// closureShort walks the closure of the admitted path rec (itself included; paths
// in seen are skipped, being walked already) and
// describes the first path in it admitted with fewer than needed distinct valid
// signers (or not admitted), or returns "" when every path has enough: a threshold
// holds for the whole closure of the path it protects, so that one identity cannot
// pre-push a dependency that a second identity then only names by hash.
func (g *Gate) closureShort(ctx context.Context, d *db, rec *PathRec, needed int, usable, seen map[string]bool, now time.Time) (string, error) {
	top := rec.StorePath[strings.LastIndexByte(rec.StorePath, '/')+1:]
	if seen[top] {
		return "", nil // in the closure of a reference walked before
	}
	seen[top] = true
	queue := []*PathRec{rec}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		base := cur.StorePath[strings.LastIndexByte(cur.StorePath, '/')+1:]
		via := ""
		if base != top {
			via = ", in the closure of " + top
		}
		if n := g.validSigners(cur, usable, now); n < needed {
			return fmt.Sprintf("%s (admitted with %d of the %d distinct signatures this path needs%s: it must be signed by as many identities, e.g. by their nixpki nix push of the whole closure)", base, n, needed, via), nil
		}
		ni, err := narinfo.Parse(strings.NewReader(cur.NarInfo), g.Cfg.StoreDir)
		if err != nil {
			return "", fmt.Errorf("stored narinfo of %s: %w", cur.StorePath, err)
		}
		var refs []string
		for _, r := range ni.References {
			if !seen[r] {
				refs = append(refs, r)
			}
		}
		cands, err := refCandidates(ctx, d, refs)
		if err != nil {
			return "", err
		}
		for _, r := range refs {
			if seen[r] {
				continue
			}
			seen[r] = true
			next, st := refState(r, cands)
			if st != StateAdmitted {
				if st == "" {
					st = "absent"
				}
				return fmt.Sprintf("%s (%s, in the closure of %s)", r, st, top), nil
			}
			queue = append(queue, next)
		}
	}
	return "", nil
}

func sigStrings(signers []Signer) []string {
	out := make([]string, len(signers))
	for i, s := range signers {
		out[i] = fmt.Sprintf("%s (key %s, certificate %s)", s.Subject, s.KeyName, strings.ToUpper(s.Serial))
	}
	return out
}

func (j judgement) signerSigs() []signing.Signature {
	out := make([]signing.Signature, 0, len(j.signers))
	for _, s := range j.signers {
		if sig, err := signing.ParseSignature(s.Sig); err == nil {
			out = append(out, sig)
		}
	}
	return out
}

// PutNarInfo admits, keeps pending or rejects an uploaded narinfo (PUT
// /<hash>.narinfo). The error is for failures of the gate itself (a database or
// disk error); a refused upload is a Rejected verdict.
//
// Cheap checks come first: a narinfo none of whose signatures can count (none, or
// none made by a known, usable certificate's key) is refused before the gate reads
// its NAR again, so an unsigned upload costs a few lookups, never a decompression.
func (g *Gate) PutNarInfo(ctx context.Context, hash string, body []byte, remote string) (Verdict, error) {
	ni, err := narinfo.Parse(bytes.NewReader(body), g.Cfg.StoreDir)
	if err != nil {
		msg := fmt.Sprintf("rejected %s.narinfo: %v", hash, err)
		g.reject(ctx, hash, "", msg, remote)
		return Verdict{Outcome: Rejected, Why: Invalid, Message: msg}, nil
	}
	p := ni.StorePath
	fail := func(why Rejection, format string, args ...any) (Verdict, error) {
		msg := "rejected " + p + ": " + fmt.Sprintf(format, args...)
		g.reject(ctx, hash, p, msg, remote)
		return Verdict{Outcome: Rejected, Why: why, Message: msg}, nil
	}
	if storepath.HashPart(p) != hash {
		return fail(Invalid, "uploaded as %s.narinfo, not as %s.narinfo", hash, storepath.HashPart(p))
	}
	if _, _, err := binarycache.ParseNARURL(ni.URL); err != nil {
		return fail(Invalid, "%v", err)
	}
	nar, ok, err := g.db.getNAR(ctx, ni.URL)
	if err != nil {
		return Verdict{}, err
	}
	switch {
	case !ok:
		return fail(Invalid, "its NAR %s was never uploaded, or expired from staging (staging_max_age %s): push the path again, its NAR before its narinfo", ni.URL, g.Cfg.StagingMaxAge.D())
	case ni.Compression != nar.Compression:
		return fail(Invalid, "Compression is %s but the uploaded NAR %s is %s", ni.Compression, ni.URL, nar.Compression)
	case ni.FileHash != nil && (!nar.HasFileHash || *ni.FileHash != nar.FileHash), ni.FileSize != 0 && int64(ni.FileSize) != nar.FileSize:
		return fail(Invalid, "FileHash/FileSize do not match the uploaded file %s (%s, %d bytes)", ni.URL, nixhash.FormatSHA256(nar.FileHash), nar.FileSize)
	case ni.NarHash != nar.NarHash || int64(ni.NarSize) != nar.NarSize:
		return fail(Invalid, "the NAR does not match the narinfo: NarHash %s, NarSize %d claimed; the uploaded NAR %s is %s, %d bytes (tampered or corrupt)",
			nixhash.FormatSHA256(ni.NarHash), ni.NarSize, ni.URL, nixhash.FormatSHA256(nar.NarHash), nar.NarSize)
	}
	ni.FileHash, ni.FileSize = nil, uint64(nar.FileSize)
	if nar.HasFileHash {
		ni.FileHash = &nar.FileHash
	}
	if ni.CA != "" {
		if err := ni.CheckContentAddress(); err != nil {
			return fail(Invalid, "%v", err)
		}
	}
	r := &admitReq{ctx: context.WithoutCancel(ctx), hash: hash, ni: ni, remote: remote, noneCount: !g.mayCount(ni, g.Now())}
	if !r.noneCount {
		// Only now is the NAR read again, to check its content address.
		r.contentAddressed, r.caNote, err = g.checkCA(ni)
		var rj *rejected
		if errors.As(err, &rj) {
			if rj.why == Gone { // the file is gone: let it come again
				g.mu.Lock()
				err := g.db.dropStagedNAR(ctx, ni.URL)
				g.mu.Unlock()
				if err != nil {
					return Verdict{}, err
				}
			}
			return fail(rj.why, "%s", rj.msg)
		} else if err != nil {
			return Verdict{}, err
		}
	}

	// From here the change runs to its end even if the uploader goes away: its log
	// records are written, so its database writes must commit with them.
	g.admitBatched(r)
	return r.verdict, r.err
}

// mayCount reports whether some signature of ni could count: made by the key of a
// known certificate usable now. Whether its scope allows the path needs the content
// address checked (reading the NAR); this needs only a signature check per
// certificate of each key named.
func (g *Gate) mayCount(ni *narinfo.NarInfo, now time.Time) bool {
	fp, err := ni.Fingerprint()
	if err != nil {
		return false
	}
	for _, s := range ni.Sigs {
		if s.Name == g.Key.Name {
			continue
		}
		for _, c := range g.trust.certsFor(s.Name) {
			pub, ok := c.PublicKey.(ed25519.PublicKey)
			if !ok || !(signing.PublicKey{Name: s.Name, Key: pub}).Verify(fp, s) {
				continue
			}
			if _, err := g.usable(c, now); err == nil {
				return true
			}
		}
	}
	return false
}

// admit is PutNarInfo under g.mu, with d the transaction of its batch (batch.go).
// With noneCount (no signature of the upload can count, see mayCount) it changes
// nothing: it answers the state of the record of the same content, if any, or
// rejects the upload, without reading the NAR.
func (g *Gate) admit(ctx context.Context, d *db, hash string, ni *narinfo.NarInfo, contentAddressed bool, caNote string, noneCount bool, remote string) (Verdict, error) {
	p := ni.StorePath
	fail := func(why Rejection, format string, args ...any) (Verdict, error) {
		msg := "rejected " + p + ": " + fmt.Sprintf(format, args...)
		g.rejectIn(ctx, d, hash, p, msg, remote)
		return Verdict{Outcome: Rejected, Why: why, Message: msg}, nil
	}
	now := g.Now()
	// The NAR is checked again under the lock (expiry may have dropped it since):
	// a path is never admitted without its NAR file.
	if _, ok, err := d.getNAR(ctx, ni.URL); err != nil {
		return Verdict{}, err
	} else if _, serr := os.Stat(filepath.Join(g.Dir, filepath.FromSlash(ni.URL))); !ok || serr != nil {
		if ok {
			if err := d.dropStagedNAR(ctx, ni.URL); err != nil {
				return Verdict{}, err
			}
		}
		return fail(Gone, "its NAR %s expired from staging (staging_max_age %s) before this narinfo came: push the path again", ni.URL, g.Cfg.StagingMaxAge.D())
	}
	cands, err := d.candidates(ctx, hash)
	if err != nil {
		return Verdict{}, err
	}
	var same *PathRec
	for i := range cands {
		c := &cands[i]
		if c.State == StateAdmitted && c.NarHash != ni.NarHash {
			return fail(Conflict, "already admitted with other content (NarHash %s): the first admission fixes an input-addressed path's content",
				nixhash.FormatSHA256(c.NarHash))
		}
		if c.NarHash == ni.NarHash {
			same = c
		}
	}
	sigs := ni.Sigs
	if noneCount && same != nil {
		// A replay that adds nothing: the record stays as it is.
		switch same.State {
		case StateAdmitted:
			return Verdict{Outcome: Admitted, Message: "already admitted " + same.StorePath}, nil
		case StatePending:
			return Verdict{Outcome: Pending, Message: "pending " + same.StorePath + ": " + same.Reason}, nil
		}
	}
	if same != nil && !noneCount {
		// The record of this content is pinned (see pin): the upload adds signatures.
		pinned, ca, note, err := g.pin(ctx, d, same, ni, contentAddressed, caNote, now)
		var rj *rejected
		if errors.As(err, &rj) {
			return fail(rj.why, "%s", rj.msg)
		} else if err != nil {
			return Verdict{}, err
		}
		sigs = mergeSigs(pinned.Sigs, ni.Sigs)
		ni, contentAddressed, caNote = pinned, ca, note
	}
	j, err := g.judge(ctx, d, ni, sigs, contentAddressed, now)
	if err != nil {
		return fail(Invalid, "%v", err)
	}
	j.caNote = caNote
	if same != nil && same.State == StateAdmitted && !noneCount {
		return g.addSignatures(ctx, d, ni, same, j, now)
	}
	if len(j.signers) == 0 {
		if len(j.refused) == 0 {
			return fail(Unsigned, "it carries no signature: sign it with a certified key (nix copy --to 'URL?secret-key=…')")
		}
		if j.caNote != "" {
			j.refused = append(j.refused, j.caNote)
		}
		return fail(Unsigned, "no signature counts: %s", strings.Join(j.refused, "; "))
	}
	if len(j.missing) > 0 {
		return fail(Invalid, "its references %s are not in the gate: upload them first", strings.Join(j.missing, ", "))
	}
	if same != nil && same.State == StatePending && sameSigners(same.Signers, j.signers) && (len(j.signers) < j.needed || len(j.waiting) > 0) {
		// Nothing new: the record stays as it is (a replay neither rewrites it nor
		// keeps it from expiring), whether it waits for signatures or for its
		// references (their admission re-judges it: see cascade).
		return Verdict{Outcome: Pending, Message: "pending " + same.StorePath + ": " + same.Reason}, nil
	}
	rec := PathRec{Hash: hash, NarHash: ni.NarHash, StorePath: p, URL: ni.URL, FirstSeen: now}
	if same != nil {
		rec.FirstSeen = same.FirstSeen
	}
	return g.decide(ctx, d, ni, rec, j, now, cands)
}

// checkCA checks a narinfo's CA field: a rejection (Invalid) when it does not derive
// the store path, Gone when its NAR file is; whether the path counts as
// content-addressed (its content matches), and if not, why.
func (g *Gate) checkCA(ni *narinfo.NarInfo) (bool, string, error) {
	if ni.CA == "" {
		return false, "", nil
	}
	if err := ni.CheckContentAddress(); err != nil {
		return false, "", rejectErr(Invalid, "%v", err)
	}
	return g.checkCAContent(ni)
}

// pin returns the narinfo a new upload of the content of rec (a pending or admitted
// record of the same NarHash) is judged and kept with, and whether it counts as
// content-addressed. An upload cannot rewrite a record: the fields no signature
// covers (CA, Deriver, System, URL, Compression, FileHash, FileSize) stay those of
// the first upload that counted, and only its signatures are added, judged with
// those fields, so anyone replaying a member's narinfo with other fields can
// neither drop counted signers nor change what is served. Two exceptions, both
// rejected or earned: References (signed) must be the record's (409 otherwise);
// a different CA field is taken only when it makes strictly more identities count
// (the gate checked that it derives the path and matches the content, so it can
// only be the path's one genuine content address, and a CA-only signer's upload
// cannot be locked out by whoever uploaded first without it); otherwise 409.
func (g *Gate) pin(ctx context.Context, d *db, rec *PathRec, ni *narinfo.NarInfo, niCA bool, niNote string, now time.Time) (*narinfo.NarInfo, bool, string, error) {
	old, err := narinfo.Parse(strings.NewReader(rec.NarInfo), g.Cfg.StoreDir)
	if err != nil {
		return nil, false, "", fmt.Errorf("stored narinfo of %s: %w", rec.StorePath, err)
	}
	if !slices.Equal(old.References, ni.References) {
		return nil, false, "", rejectErr(Conflict, "its References (%s) differ from those of the %s record of this content (%s), which the counted signatures sign: upload it with the same references",
			orNone(strings.Join(ni.References, " ")), rec.State, orNone(strings.Join(old.References, " ")))
	}
	if old.CA == ni.CA {
		// Same NarHash, so same content: the upload's content check holds for it.
		return old, niCA, niNote, nil
	}
	oldCA, _, err := g.checkCA(old)
	if err != nil {
		return nil, false, "", fmt.Errorf("stored narinfo of %s: %w", rec.StorePath, err)
	}
	sigs := mergeSigs(old.Sigs, ni.Sigs)
	jOld, err := g.judge(ctx, d, old, sigs, oldCA, now)
	if err != nil {
		return nil, false, "", err
	}
	jNew, err := g.judge(ctx, d, ni, sigs, niCA, now)
	if err != nil {
		return nil, false, "", err
	}
	if !moreSubjects(jNew.signers, jOld.signers) {
		return nil, false, "", rejectErr(Conflict, "its CA field (%s) differs from that of the %s record of this content (%s) and would not make more identities count (%d, against %d): upload it with CA %s",
			orNone(ni.CA), rec.State, orNone(old.CA), len(jNew.signers), len(jOld.signers), orNone(old.CA))
	}
	out := *old
	out.CA = ni.CA
	return &out, niCA, niNote, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// moreSubjects reports whether the subjects of a are a strict superset of b's.
func moreSubjects(a, b []Signer) bool {
	in := map[string]bool{}
	for _, s := range a {
		in[s.Subject] = true
	}
	for _, s := range b {
		if !in[s.Subject] {
			return false
		}
	}
	return len(in) > len(b)
}

// sameSigners reports whether two signer lists name the same certificates.
func sameSigners(a, b []Signer) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[string]bool{}
	for _, s := range a {
		in[s.Subject+"\x00"+s.Cert] = true
	}
	for _, s := range b {
		if !in[s.Subject+"\x00"+s.Cert] {
			return false
		}
	}
	return true
}

// nixExtra keeps, of a narinfo's lines this package does not interpret, those Nix
// 2.8 reads (System): the gate serves no key it does not know.
func nixExtra(extra []narinfo.Field) []narinfo.Field {
	var out []narinfo.Field
	for _, f := range extra {
		if f.Key == "System" {
			out = append(out, f)
		}
	}
	return out
}

// decide stores a candidate as admitted or pending according to its judgement.
// cands are the path's candidates as stored before (all of them, when it is admitted).
func (g *Gate) decide(ctx context.Context, d *db, ni *narinfo.NarInfo, rec PathRec, j judgement, now time.Time, cands []PathRec) (Verdict, error) {
	kept := *ni
	kept.Sigs = j.signerSigs()
	kept.Extra = nixExtra(ni.Extra)
	text, err := kept.MarshalText()
	if err != nil {
		return Verdict{}, err
	}
	rec.NarInfo, rec.Signers, rec.Needed, rec.UpdatedAt = string(text), j.signers, j.needed, now
	who := strings.Join(sigStrings(j.signers), ", ")
	switch {
	case len(j.signers) < j.needed:
		rec.State = StatePending
		rec.Reason = fmt.Sprintf("has %d of %d signatures from distinct certified identities (%s): %s; waiting for another identity's push", len(j.signers), j.needed, j.rule, who)
		if len(j.refused) > 0 {
			rec.Reason += "; not counted: " + strings.Join(j.refused, "; ")
		}
	case len(j.waiting) > 0:
		rec.State = StatePending
		rec.Reason = "signed by " + who + "; waiting for its references " + strings.Join(j.waiting, ", ")
	default:
		served, err := g.serve(&kept)
		if err != nil {
			return Verdict{}, err
		}
		rec.State, rec.Reason, rec.Served, rec.AdmittedAt = StateAdmitted, "admitted: signed by "+who, served, now
	}
	if j.caNote != "" {
		rec.Reason += "; " + j.caNote
	}
	if rec.State == StatePending {
		if err := g.recordIn(d, "pending", map[string]any{"path": rec.StorePath, "nar_hash": nixhash.FormatSHA256(rec.NarHash), "signers": j.signers, "reason": rec.Reason}); err != nil {
			return Verdict{}, err
		}
		if err := d.putPath(ctx, rec); err != nil {
			return Verdict{}, err
		}
		return Verdict{Outcome: Pending, Message: "pending " + rec.StorePath + ": " + rec.Reason}, nil
	}
	if err := g.syncNARDir(); err != nil {
		return Verdict{}, err
	}
	if err := g.recordIn(d, "admission", map[string]any{"path": rec.StorePath, "nar_hash": nixhash.FormatSHA256(rec.NarHash), "nar_size": ni.NarSize,
		"signers": j.signers, "needed": j.needed, "rule": j.rule}); err != nil {
		return Verdict{}, err
	}
	if err := d.putPath(ctx, rec); err != nil {
		return Verdict{}, err
	}
	if err := g.dropOtherCandidates(ctx, d, rec, cands); err != nil {
		return Verdict{}, err
	}
	if err := g.cascade(ctx, d, rec.StorePath, false, now); err != nil {
		return Verdict{}, err
	}
	return Verdict{Outcome: Admitted, Message: "admitted " + rec.StorePath + ": signed by " + who}, nil
}

// serve renders the narinfo the gate serves: the kept one plus the gate's signature.
func (g *Gate) serve(kept *narinfo.NarInfo) (string, error) {
	fp, err := kept.Fingerprint()
	if err != nil {
		return "", err
	}
	out := *kept
	out.Extra = nixExtra(kept.Extra)
	out.Sigs = append(slices.Clone(kept.Sigs), g.Key.Sign(fp))
	text, err := out.MarshalText()
	return string(text), err
}

// addSignatures merges new identities into an admitted path. ni is the narinfo pin
// returned (the admitted one, or with the CA field that made more identities count).
func (g *Gate) addSignatures(ctx context.Context, d *db, ni *narinfo.NarInfo, rec *PathRec, j judgement, now time.Time) (Verdict, error) {
	have := map[string]bool{}
	for _, s := range rec.Signers {
		have[s.Subject] = true
	}
	var added []Signer
	for _, s := range j.signers {
		if !have[s.Subject] {
			have[s.Subject] = true
			added = append(added, s)
		}
	}
	if len(added) == 0 {
		return Verdict{Outcome: Admitted, Message: "already admitted " + rec.StorePath}, nil
	}
	rec.Signers = append(rec.Signers, added...)
	kept := *ni
	kept.Sigs = judgement{signers: rec.Signers}.signerSigs()
	kept.Extra = nixExtra(ni.Extra)
	text, err := kept.MarshalText()
	if err != nil {
		return Verdict{}, err
	}
	var served string
	if served, err = g.serve(&kept); err != nil {
		return Verdict{}, err
	}
	rec.NarInfo, rec.Served, rec.UpdatedAt = string(text), served, now
	if err := g.recordIn(d, "signatures", map[string]any{"path": rec.StorePath, "added": added}); err != nil {
		return Verdict{}, err
	}
	if err := d.putPath(ctx, *rec); err != nil {
		return Verdict{}, err
	}
	if err := g.cascade(ctx, d, rec.StorePath, true, now); err != nil {
		return Verdict{}, err
	}
	return Verdict{Outcome: Admitted, Message: "already admitted " + rec.StorePath + "; added signatures of " + strings.Join(sigStrings(added), ", ")}, nil
}

func mergeSigs(a, b []signing.Signature) []signing.Signature {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.ContainsFunc(out, func(o signing.Signature) bool { return o.String() == s.String() }) {
			out = append(out, s)
		}
	}
	return out
}

// dropOtherCandidates forgets the other contents proposed for an admitted path, among
// its candidates cands.
func (g *Gate) dropOtherCandidates(ctx context.Context, d *db, rec PathRec, cands []PathRec) error {
	for _, c := range cands {
		if c.NarHash != rec.NarHash {
			if err := d.deletePath(ctx, c.Hash, c.NarHash); err != nil {
				return err
			}
		}
	}
	return nil
}

// cascade re-judges pending paths that waited for the path just admitted, or, when
// signed is true (the path gained signers), the pending paths needing more than one
// signature, whose closure it may be in.
func (g *Gate) cascade(ctx context.Context, d *db, admitted string, signed bool, now time.Time) error {
	base := admitted[strings.LastIndexByte(admitted, '/')+1:]
	pend, err := d.pathsInState(ctx, StatePending)
	if err != nil {
		return err
	}
	for _, rec := range pend {
		if signed && rec.Needed < 2 {
			continue
		}
		ni, err := narinfo.Parse(strings.NewReader(rec.NarInfo), g.Cfg.StoreDir)
		if err != nil || !signed && !slices.Contains(ni.References, base) {
			continue
		}
		// The list was read before this loop's admissions (and theirs, decide
		// cascading in turn): a record admitted or dropped since is left alone, and
		// once one content of a path is admitted, the others are not.
		cands, err := d.candidates(ctx, rec.Hash)
		if err != nil {
			return err
		}
		if !stillPending(cands, rec.NarHash) {
			continue
		}
		// A pending path that cannot be judged again (its NAR gone from staging, a
		// stored narinfo that no longer parses) stays pending: it must not undo the
		// admission that cascaded to it, nor answer for it.
		ca, note := false, ""
		if ni.CA != "" && ni.CheckContentAddress() == nil {
			if ca, note, err = g.checkCAContent(ni); err != nil {
				g.Log.Warn("cascade: a pending path stays pending", "path", rec.StorePath, "after", admitted, "err", err)
				continue
			}
		}
		j, err := g.judge(ctx, d, ni, ni.Sigs, ca, now)
		if err != nil {
			g.Log.Warn("cascade: a pending path stays pending", "path", rec.StorePath, "after", admitted, "err", err)
			continue
		}
		j.caNote = note
		if len(j.signers) >= j.needed && len(j.waiting) == 0 && len(j.missing) == 0 {
			if _, err := g.decide(ctx, d, ni, rec, j, now, cands); err != nil {
				// Not a rejection of the upload that cascaded here: the whole change
				// rolls back.
				return fmt.Errorf("admitting %s after %s: %w", rec.StorePath, admitted, err)
			}
		}
	}
	return nil
}

// stillPending reports whether the candidates of a path hold narHash as pending and
// no content as admitted.
func stillPending(cands []PathRec, narHash [32]byte) bool {
	pending := false
	for _, c := range cands {
		if c.State == StateAdmitted {
			return false
		}
		pending = pending || c.NarHash == narHash && c.State == StatePending
	}
	return pending
}

// reject records a rejection in the log (and, for a path, as its last rejection).
func (g *Gate) reject(ctx context.Context, hash, storePath, reason, remote string) {
	g.rejectIn(ctx, g.db, hash, storePath, reason, remote)
}

// rejectIn is reject with the database d (a state change's).
func (g *Gate) rejectIn(ctx context.Context, d *db, hash, storePath, reason, remote string) {
	if err := g.recordIn(d, "rejection", map[string]string{"path": storePath, "reason": reason, "remote": remote}); err != nil {
		g.Log.Error("logging a rejection", "err", err)
	}
	if hash != "" && len(hash) == storepath.HashLen {
		if err := d.setRejection(ctx, hash, storePath, reason, g.Now()); err != nil {
			g.Log.Error("storing a rejection", "err", err)
		}
	}
	g.Log.Info("rejected", "reason", reason, "remote", remote)
}
