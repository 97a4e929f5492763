package enroll

import (
	"context"
	"time"
)

// pruneEvery is how many recorded attempts pass between two prunings of the attempt
// log, so the log holds at most nix.attempts_max + pruneEvery rows.
const pruneEvery = 64

// attemptRecorded counts a recorded attempt and, every pruneEvery of them, bounds
// the attempt log to nix.attempts_max rows and nix.attempts_max_age (what it drops
// is counted in the database, see store.NixAttemptsDropped).
func (a *Authority) attemptRecorded(ctx context.Context) {
	if a.attempts.Add(1)%pruneEvery != 0 {
		return
	}
	pol := a.CA.Config.Nix
	before := time.Time{}
	if age := pol.AttemptsMaxAge.D(); age > 0 {
		before = a.now().Add(-age)
	}
	keep := pol.AttemptsMax
	if keep <= 0 {
		keep = int(^uint(0) >> 2)
	}
	if n, err := a.Store.PruneNixAttempts(context.WithoutCancel(ctx), keep, before); err != nil {
		a.Log.Error("nix: bounding the attempt log", "err", err)
	} else if n > 0 {
		a.Log.Info("nix: attempt log bounded", "dropped", n, "keep", keep)
	}
}
