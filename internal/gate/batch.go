package gate

import (
	"context"
	"fmt"

	"nixpki/internal/nix/narinfo"
)

// Group commit of admissions. Every admission ends with its log entries fsynced
// before its database change commits, and runs under g.mu. While NARs stream to
// the disk, an fsync waits for the disk's cache flush, several milliseconds: one per
// narinfo made g.mu the push's bottleneck (held ~97% of a 200-path push, most of it
// in the log's fsync). So narinfo uploads queue for g.mu, and whoever takes it
// admits every queued one, in arrival order, in one transaction: each is judged
// against the state the earlier ones left (the transaction sees its own writes),
// exactly as if they had come one by one; their log entries are written as they
// are decided and fsynced once, before the commit; then each upload gets its
// answer. A crash before the fsync loses the whole batch (none was answered); after
// it and before the commit, the log names admissions the database lacks, as a crash
// between an admission's fsync and commit always could: their uploads were not
// answered and come again.

// maxBatch bounds the admissions of one transaction, which holds SQLite's write lock
// (NAR uploads wait for it to record their files).
const maxBatch = 64

// admitReq is a narinfo upload waiting to be admitted, and then its answer.
type admitReq struct {
	ctx              context.Context
	hash             string
	ni               *narinfo.NarInfo
	contentAddressed bool
	noneCount        bool // no signature can count (mayCount)
	caNote, remote   string

	verdict Verdict
	err     error
	done    bool // answered (set and read under g.mu)
}

// admitBatched admits r, alone or in the batch of whoever holds g.mu next.
func (g *Gate) admitBatched(r *admitReq) {
	g.admitMu.Lock()
	g.admitQ = append(g.admitQ, r)
	g.admitMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	for !r.done { // else a batch before took it
		g.admitMu.Lock()
		n := min(len(g.admitQ), maxBatch)
		batch := g.admitQ[:n:n]
		g.admitQ = append([]*admitReq(nil), g.admitQ[n:]...)
		g.admitMu.Unlock()
		g.admitAll(batch) // r is in the queue until a batch takes it
	}
}

// admitAll admits batch under g.mu in one transaction. A failure (not a verdict)
// rolls the whole batch back and answers it to every upload in
// it, which may come again.
func (g *Gate) admitAll(batch []*admitReq) {
	d := g.db.begin()
	d.ch.logLater = true
	defer d.rollback()
	var failed error
	for _, r := range batch {
		r.verdict, r.err = g.admit(r.ctx, d, r.hash, r.ni, r.contentAddressed, r.caNote, r.noneCount, r.remote)
		if r.err != nil {
			failed = r.err
			break
		}
	}
	if failed == nil {
		if err := g.tlog.Sync(); err != nil {
			failed = fmt.Errorf("the gate's log: %w", err)
		}
	}
	if failed == nil {
		failed = d.commit()
	}
	for _, r := range batch {
		if failed != nil {
			r.verdict, r.err = Verdict{}, failed
		}
		r.done = true
	}
}
