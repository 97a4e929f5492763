package gate

import (
	"context"
	"fmt"
	"math"
	"strings"

	"nixpki/internal/nix/narinfo"
)

// revokedCerts returns the IDs (certID) of the member certificates the CRLs held
// revoke.
func (g *Gate) revokedCerts() map[string]bool {
	t := g.trust
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[string]bool{}
	for _, cs := range t.byKey {
		for _, c := range cs {
			if t.v.IsRevoked(c) {
				out[certID(c)] = true
			}
		}
	}
	return out
}

// qnode is an admitted path in quarantine's graph.
type qnode struct {
	rec      *PathRec
	refs     []string // base names, self excluded
	left     int      // distinct subjects among its signers not revoked
	revoked  []string // its signers' revoked certificates
	affected bool     // it lost signers, or a path of its closure did
	// Verdict, once judged: whether it stays, the fewest signers left on a path of
	// its closure (itself included) that lost signers, that path, and why not.
	judged, judging bool
	ok              bool
	min             int
	minPath         string
	why             string
}

// quarantine withdraws, after a CRL change that revoked the certificates in
// newly (certID → true), the admitted paths it leaves short: a path whose
// unrevoked signers (distinct subjects) are fewer than its own threshold, and a
// path whose closure no longer meets its threshold — a reference withdrawn, or, for
// a threshold k > 1, a path of the closure left with fewer than k unrevoked
// signers (the rule admission applies, see closureShort). Only the paths that lost
// signers and their referrers (transitively, over the referrers graph of the
// admitted paths) are judged again: the closures of the others did not change.
// Expiry of a certificate after admission withdraws nothing. It returns how many
// paths it withdrew.
func (g *Gate) quarantine(ctx context.Context, newly map[string]bool) (int, error) {
	if len(newly) == 0 {
		return 0, nil
	}
	adm, err := g.db.pathsInState(ctx, StateAdmitted)
	if err != nil {
		return 0, err
	}
	revoked := g.revokedCerts()
	nodes := make(map[string]*qnode, len(adm))
	order := make([]string, 0, len(adm))
	referrers := map[string][]string{}
	var lost []string
	for i := range adm {
		rec := &adm[i]
		base := rec.StorePath[strings.LastIndexByte(rec.StorePath, '/')+1:]
		ni, err := narinfo.Parse(strings.NewReader(rec.NarInfo), g.Cfg.StoreDir)
		if err != nil {
			return 0, fmt.Errorf("stored narinfo of %s: %w", rec.StorePath, err)
		}
		n := &qnode{rec: rec}
		subjects := map[string]bool{}
		hit := false
		for _, s := range rec.Signers {
			if revoked[s.Cert] {
				n.revoked = append(n.revoked, fmt.Sprintf("certificate %s (%s, key %s)", strings.ToUpper(s.Serial), s.Subject, s.KeyName))
				hit = hit || newly[s.Cert]
				continue
			}
			subjects[s.Subject] = true
		}
		n.left = len(subjects)
		for _, r := range ni.References {
			if r != base {
				n.refs = append(n.refs, r)
				referrers[r] = append(referrers[r], base)
			}
		}
		nodes[base] = n
		order = append(order, base)
		if hit {
			lost = append(lost, base)
		}
	}
	// The paths that lost signers and everything admitted above them.
	for len(lost) > 0 {
		b := lost[len(lost)-1]
		lost = lost[:len(lost)-1]
		n := nodes[b]
		if n == nil || n.affected {
			continue
		}
		n.affected = true
		lost = append(lost, referrers[b]...)
	}
	var judge func(b string) *qnode
	judge = func(b string) *qnode {
		n := nodes[b]
		if n.judged || n.judging { // judging: a cycle, which store paths cannot form
			return n
		}
		n.judging = true
		n.ok, n.min, n.minPath = true, math.MaxInt, ""
		if len(n.revoked) > 0 {
			n.min, n.minPath = n.left, b
		}
		if n.left < n.rec.Needed {
			n.ok = false
			n.why = fmt.Sprintf("%s revoked; %d of %d needed signatures remain", strings.Join(n.revoked, ", "), n.left, n.rec.Needed)
		}
		for _, r := range n.refs {
			rn := nodes[r]
			if rn == nil || !rn.affected {
				continue // its closure lost no signer
			}
			judge(r)
			if rn.min < n.min {
				n.min, n.minPath = rn.min, rn.minPath
			}
			if n.ok && !rn.ok {
				n.ok = false
				n.why = fmt.Sprintf("its reference %s is withdrawn (%s)", r, rn.why)
			}
		}
		if n.ok && n.rec.Needed > 1 && n.min < n.rec.Needed {
			n.ok = false
			n.why = fmt.Sprintf("its closure no longer meets its threshold: %s is left with %d of the %d distinct signatures this path needs (%s revoked)",
				n.minPath, n.min, n.rec.Needed, strings.Join(nodes[n.minPath].revoked, ", "))
		}
		n.judging, n.judged = false, true
		return n
	}
	withdrawn := 0
	now := g.Now()
	for _, b := range order {
		n := nodes[b]
		if !n.affected || judge(b).ok {
			continue
		}
		rec := *n.rec
		rec.State, rec.Served, rec.UpdatedAt = StateQuarantined, "", now
		rec.Reason = "quarantined: " + n.why
		if err := g.record("quarantine", map[string]any{"path": rec.StorePath, "revoked": n.revoked, "reason": rec.Reason}); err != nil {
			return withdrawn, err
		}
		if err := g.db.putPath(ctx, rec); err != nil {
			return withdrawn, err
		}
		withdrawn++
	}
	return withdrawn, nil
}
