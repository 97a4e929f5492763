// Package verify checks store paths, or their closures, for integrity and trust
// against nixpki's CA: it is what `nixpki verify` runs.
//
// For each path it recomputes the NAR hash from the store's contents and compares
// it with the recorded NarHash (corrupt if they differ), and it decides whether the
// path is trusted: signed by enough distinct identities — keys certified by the CA
// (chain to the root, Nix-signing usage, not revoked, valid now or when a gate
// admitted the path, scope covering the path) or plain trusted keys — or
// content-addressed (its CA field re-derives its store path), or, when no
// signatures are demanded, built locally ("ultimate"), exactly as
// `nix store verify --sigs-needed N` decides, except that Nix counts keys where
// this counts identities. A certificate's targets (the gates and machines it may
// sign for) are the gate's rule and are not checked here.
//
// Stores are a local Nix store (files plus Nix's SQLite database, read-only, no
// daemon, no lock: LocalStore) or a binary cache over http(s):// or file://
// (CacheStore). Paths are hashed in parallel; bad input (a missing path, an
// unreadable database, a malformed signature) is reported per path and the run
// goes on. Summary.ExitCode has `nix store verify`'s exit bits.
package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"nixpki/internal/nix/nixhash"
)

// Exit status bits, as `nix store verify` has them.
const (
	ExitCorrupt   = 1
	ExitUntrusted = 2
	ExitError     = 4
)

// Store is where paths are checked: a local store or a binary cache.
type Store interface {
	StoreDir() string
	// Resolve maps a command-line argument to a store path.
	Resolve(arg string) (string, error)
	// Info returns the store's record of a path; errors wrap ErrNotValid when
	// the store does not hold it.
	Info(ctx context.Context, path string) (*PathInfo, error)
	// Contents recomputes the NAR hash and size from the stored data, and feeds
	// what a content address covers to ca when ca is not nil. Errors that show
	// damaged data wrap errCorrupt.
	Contents(ctx context.Context, pi *PathInfo, ca *caHash) ([32]byte, uint64, error)
	Close() error
	String() string
}

// Lister is a Store that can list all its paths (for --all).
type Lister interface {
	All(ctx context.Context) ([]string, error)
}

// Options say what to check and how.
type Options struct {
	Store      Store
	Args       []string // paths, or symlinks to them
	All        bool     // every valid path (stores that are Listers)
	Recursive  bool     // the closures of the paths
	NoContents bool     // skip hashing contents
	SigsNeeded int      // 0: one signature, or none for locally built paths
	Policy     *Policy
	Jobs       int // parallel checks; 0: GOMAXPROCS (at least 8 for remote caches, 16 per core when local NARs are hashed with AVX-512)

	// Report, if set, receives each result as soon as it is decided; calls are
	// serialised.
	Report func(*Result)
	// Progress, if set, is kept up to date.
	Progress *Progress
}

// Result is the verdict on one path.
type Result struct {
	Path             string      `json:"path"`
	OK               bool        `json:"ok"`
	Corrupt          bool        `json:"corrupt"`
	Trusted          bool        `json:"trusted"`
	Error            bool        `json:"error"`
	Ultimate         bool        `json:"ultimate,omitempty"`
	ContentAddressed bool        `json:"contentAddressed,omitempty"`
	NarHash          string      `json:"narHash,omitempty"`
	NarSize          uint64      `json:"narSize,omitempty"`
	Signers          []Signer    `json:"signers"`
	Rejected         []Rejection `json:"rejected,omitempty"`
	Problems         []string    `json:"problems"`

	checked bool // trust was decided (not so for paths that could not be read)
}

func (r *Result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Progress counts what has been checked; its fields are updated atomically.
type Progress struct {
	Paths, DonePaths atomic.Int64
	Bytes, DoneBytes atomic.Uint64
	Querying         atomic.Bool // still reading path records
}

// Summary adds results up.
type Summary struct {
	Paths, OK, Corrupt, Untrusted, Failed int
	Bytes                                 uint64
	Elapsed                               time.Duration
}

// Add counts one result.
func (s *Summary) Add(r *Result) {
	s.Paths++
	s.Bytes += r.NarSize
	if r.OK {
		s.OK++
	}
	if r.Corrupt {
		s.Corrupt++
	}
	if r.checked && !r.Trusted {
		s.Untrusted++
	}
	if r.Error {
		s.Failed++
	}
}

// ExitCode is `nix store verify`'s: bit 1 some path is corrupt, bit 2 some path
// is untrusted, bit 4 some path could not be checked.
func (s Summary) ExitCode() int {
	code := 0
	if s.Corrupt > 0 {
		code |= ExitCorrupt
	}
	if s.Untrusted > 0 {
		code |= ExitUntrusted
	}
	if s.Failed > 0 {
		code |= ExitError
	}
	return code
}

// Run checks the paths and returns the summary and the results, sorted by path.
func Run(ctx context.Context, o Options) (Summary, []*Result) {
	start := time.Now()
	if o.Policy == nil {
		o.Policy = &Policy{}
	}
	if o.Policy.Now.IsZero() {
		o.Policy.Now = start
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.GOMAXPROCS(0)
		if _, local := o.Store.(*LocalStore); !local {
			o.Jobs = max(o.Jobs, 8)
		} else if !o.NoContents {
			o.Jobs = hashJobs(o.Jobs)
		}
	}
	var (
		mu      sync.Mutex
		results []*Result
		sum     Summary
	)
	emit := func(r *Result) {
		r.OK = r.Trusted && !r.Corrupt && !r.Error
		if r.Signers == nil {
			r.Signers = []Signer{}
		}
		if r.Problems == nil {
			r.Problems = []string{}
		}
		mu.Lock()
		defer mu.Unlock()
		results = append(results, r)
		sum.Add(r)
		if o.Report != nil {
			o.Report(r)
		}
	}

	o.Progress.Querying.Store(true)
	roots := resolveRoots(ctx, o, emit)
	infos := closure(ctx, o, roots, emit)
	o.Progress.Querying.Store(false)

	// Largest first, so that big paths do not start last and leave cores idle.
	slices.SortFunc(infos, func(a, b *PathInfo) int {
		return cmp.Or(cmp.Compare(b.NarSize, a.NarSize), strings.Compare(a.Path, b.Path))
	})
	if ls, ok := o.Store.(*LocalStore); ok {
		ls.multiBuffer = multiBufferFor(o.Jobs, len(infos))
	}
	work := make(chan *PathInfo)
	var wg sync.WaitGroup
	for range min(o.Jobs, max(len(infos), 1)) {
		wg.Go(func() {
			for pi := range work {
				emit(check(ctx, o, pi))
				o.Progress.DonePaths.Add(1)
				o.Progress.DoneBytes.Add(pi.NarSize)
			}
		})
	}
	for _, pi := range infos {
		if ctx.Err() != nil {
			emit(&Result{Path: pi.Path, Error: true, Problems: []string{fmt.Sprintf("path '%s' was not checked: %v", pi.Path, ctx.Err())}})
			continue
		}
		work <- pi
	}
	close(work)
	wg.Wait()
	sum.Elapsed = time.Since(start)
	slices.SortFunc(results, func(a, b *Result) int { return strings.Compare(a.Path, b.Path) })
	return sum, results
}

// resolveRoots maps the arguments (or --all) to store paths.
func resolveRoots(ctx context.Context, o Options, emit func(*Result)) []string {
	var roots []string
	if o.All {
		l, ok := o.Store.(Lister)
		if !ok {
			emit(&Result{Path: o.Store.String(), Error: true, Problems: []string{fmt.Sprintf("cannot list the paths of %s (--all works on local stores)", o.Store)}})
		} else if all, err := l.All(ctx); err != nil {
			emit(&Result{Path: o.Store.String(), Error: true, Problems: []string{fmt.Sprintf("cannot list the paths of %s: %v", o.Store, err)}})
		} else {
			roots = all
		}
	}
	for _, a := range o.Args {
		p, err := o.Store.Resolve(a)
		if err != nil {
			emit(&Result{Path: a, Error: true, Problems: []string{err.Error()}})
			continue
		}
		roots = append(roots, p)
	}
	return roots
}

// closure reads the records of the roots and, with Recursive, of everything they
// refer to, a breadth-first level at a time, each level in parallel.
func closure(ctx context.Context, o Options, roots []string, emit func(*Result)) []*PathInfo {
	seen := map[string]bool{}
	referrer := map[string]string{}
	var frontier []string
	for _, r := range roots {
		if !seen[r] {
			seen[r] = true
			frontier = append(frontier, r)
		}
	}
	var out []*PathInfo
	for len(frontier) > 0 && ctx.Err() == nil {
		infos := make([]*PathInfo, len(frontier))
		errs := make([]error, len(frontier))
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(o.Jobs, len(frontier)) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(frontier); i = int(next.Add(1) - 1) {
					infos[i], errs[i] = o.Store.Info(ctx, frontier[i])
				}
			})
		}
		wg.Wait()
		var level []string
		for i, p := range frontier {
			if errs[i] != nil {
				msg := errs[i].Error()
				if errors.Is(errs[i], ErrNotValid) && referrer[p] != "" {
					msg += fmt.Sprintf(" (referenced by '%s')", referrer[p])
				}
				emit(&Result{Path: p, Error: true, Problems: []string{msg}})
				continue
			}
			out = append(out, infos[i])
			o.Progress.Paths.Add(1)
			o.Progress.Bytes.Add(infos[i].NarSize)
			if !o.Recursive {
				continue
			}
			for _, r := range infos[i].References {
				if !seen[r] {
					seen[r] = true
					referrer[r] = p
					level = append(level, r)
				}
			}
		}
		frontier = level
	}
	return out
}

// check decides one path.
func check(ctx context.Context, o Options, pi *PathInfo) *Result {
	r := &Result{Path: pi.Path, NarHash: nixhash.FormatSHA256(pi.NarHash), NarSize: pi.NarSize, Ultimate: pi.Ultimate}
	for _, b := range pi.BadSigs {
		r.Error = true
		r.problem("path '%s' has a malformed signature %s", pi.Path, b)
	}
	caOK := false
	if pi.CA != "" {
		if err := pi.NarInfo().CheckContentAddress(); err != nil {
			r.Error = true
			r.problem("path '%s' has a content address that does not derive it: %v", pi.Path, err)
		} else {
			caOK = true
		}
	}
	r.ContentAddressed = caOK

	if !o.NoContents {
		var cah *caHash
		if caOK {
			cah = newCAHash(pi.CA)
		}
		got, size, err := o.Store.Contents(ctx, pi, cah)
		switch {
		case errors.Is(err, errCorrupt):
			r.Corrupt = true
			r.problem("path '%s' is corrupt: %v", pi.Path, err)
		case err != nil:
			r.Error = true
			r.problem("path '%s': cannot check its contents: %v", pi.Path, err)
		case got != pi.NarHash:
			r.Corrupt = true
			r.problem("path '%s' was modified! expected hash '%s', got '%s'", pi.Path, nixhash.FormatSHA256(pi.NarHash), nixhash.FormatSHA256(got))
		case pi.NarSize != 0 && size != pi.NarSize:
			r.Corrupt = true
			r.problem("path '%s' was modified! expected NAR size %d, got %d", pi.Path, pi.NarSize, size)
		case cah != nil:
			if err := cah.check(); err != nil {
				r.Corrupt = true
				r.problem("path '%s' %v", pi.Path, err)
			}
		}
	}

	fp, err := pi.Fingerprint()
	if err != nil && len(pi.Sigs) > 0 {
		r.Error = true
		r.problem("path '%s': cannot check its signatures: %v", pi.Path, err)
	} else if len(pi.Sigs) > 0 {
		signers, rejected, gerr := o.Policy.evaluate(pi, fp, caOK)
		r.Signers, r.Rejected = signers, rejected
		if gerr != nil {
			r.Error = true
			r.problem("path '%s': %v", pi.Path, gerr)
		}
	}
	r.checked = true
	need := max(o.SigsNeeded, 1)
	have := identities(r.Signers)
	switch {
	case pi.Ultimate && o.SigsNeeded == 0, caOK, have >= need:
		r.Trusted = true
	default:
		r.problem("path '%s' is untrusted: %s", pi.Path, untrustedDetail(pi, r, have, need, o.SigsNeeded))
	}
	return r
}

// untrustedDetail says why a path is untrusted: how many signatures count and what
// is wrong with the others.
func untrustedDetail(pi *PathInfo, r *Result, have, need, sigsNeeded int) string {
	var parts []string
	if have > 0 {
		var who []string
		for _, s := range r.Signers {
			if !slices.Contains(who, s.Identity) {
				who = append(who, s.Identity)
			}
		}
		parts = append(parts, "signed by "+strings.Join(who, ", "))
	}
	for _, rj := range r.Rejected {
		parts = append(parts, rj.Key+": "+rj.Reason)
	}
	if len(pi.Sigs) == 0 {
		parts = append(parts, "no signatures")
	}
	if pi.Ultimate && sigsNeeded > 0 {
		parts = append(parts, "built locally, which counts only without --sigs-needed")
	}
	return fmt.Sprintf("%d of %d required signatures (%s)", have, need, strings.Join(parts, "; "))
}
