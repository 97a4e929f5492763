package gate

import (
	"context"
	"fmt"
	"strings"

	"nixpki/internal/nix/storepath"
)

// Status reports, for each store path (or hash part) given, whether the gate serves
// it: "admitted PATH", "pending PATH: why", "quarantined PATH: …", "rejected PATH:
// …" or "absent PATH". Anyone may ask, so the lines name no signer, key or
// certificate: a pending path's line says how many identities signed it of how
// many its rule needs, or which references it waits for; a quarantined or rejected
// path's line points to the gate's log (nixpki gate audit), which has the reason.
// The uploader saw the full reason in the answer to its upload.
func (g *Gate) Status(ctx context.Context, paths []string) ([]string, error) {
	out := make([]string, 0, len(paths))
	// Two queries for each statusBatch paths, not two for each path.
	for len(paths) > 0 {
		batch := paths[:min(len(paths), statusBatch)]
		paths = paths[len(batch):]
		hashes := make([]string, len(batch))
		for i, p := range batch {
			hashes[i] = storepath.HashPart(p)
		}
		cands, err := g.db.candidatesOf(ctx, hashes)
		if err != nil {
			return nil, err
		}
		rejected, err := g.db.rejectionsOf(ctx, hashes)
		if err != nil {
			return nil, err
		}
		for i, p := range batch {
			_, wasRejected := rejected[hashes[i]]
			out = append(out, g.statusLine(p, cands[hashes[i]], wasRejected))
		}
	}
	return out, nil
}

// statusBatch is how many paths a status query looks up at once.
const statusBatch = 1000

// statusLine is Status's line for path p, from its records (newest first) and
// whether it was rejected.
func (g *Gate) statusLine(p string, cands []PathRec, rejected bool) string {
	var best *PathRec
	for i, c := range cands {
		switch {
		case c.State == StateAdmitted:
			return "admitted " + p
		case best == nil || c.State == StatePending && best.State != StatePending:
			best = &cands[i]
		}
	}
	switch {
	case best != nil && best.State == StatePending:
		if len(best.Signers) < best.Needed {
			_, rule := g.Cfg.SigsNeededFor(best.StorePath)
			return fmt.Sprintf("pending %s: has %d of %d signatures from distinct certified identities (%s); waiting for another identity's push", p, len(best.Signers), best.Needed, rule)
		}
		if i := strings.Index(best.Reason, "waiting for its references"); i >= 0 {
			return "pending " + p + ": " + best.Reason[i:]
		}
		return "pending " + p
	case best != nil:
		return best.State + " " + p + ": withdrawn after a revocation (nixpki gate audit on the gate tells why)"
	case rejected:
		return "rejected " + p + ": its last upload was refused (the answer to it said why; so does nixpki gate audit on the gate)"
	}
	return "absent " + p
}
