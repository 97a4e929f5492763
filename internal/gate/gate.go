// Package gate is nixpki's gate: a Nix HTTP binary cache on (or near) a target that
// admits a store path only when enough distinct certified identities signed it, and
// serves it re-signed with the gate's own key, which the target's nix.conf trusts.
// Stock Nix on the target then accepts exactly what certified keys signed.
//
// Uploads come as `nix copy --to http(s)://gate?secret-key=…` sends them: NARs
// (PUT /nar/…, any compression Nix writes) are streamed to disk while decompressed,
// checked as NARs and hashed; a narinfo (PUT /<hash>.narinfo) is admitted if its NAR
// matches, its references are admitted and its signatures, judged against the
// certificates and CRLs uploaded to PUT /nixpki/certs and /nixpki/crl, meet the
// threshold for its name over its whole closure. Paths short of signatures wait as
// pending; a newer CRL quarantines the paths it leaves short, and their referrers,
// at once. Every certificate, CRL, admission, rejection and quarantine is appended
// to a tamper-evident log (internal/tlog).
//
// Files: config.go (G/config.json), init.go (gate init, keys), db.go and dbstmt.go
// (the SQLite state and its prepared statements), nar.go (NAR uploads, decode
// slots), xz.go (xz decoding with bounded dictionaries and their memory budget),
// trust.go (certificates, CRLs, signature verdicts), verdict.go (what admission
// and the uploads answer), admit.go (admission, pending), batch.go (group commit),
// quarantine.go (withdrawal after a CRL, along closures), server.go (HTTP: the one
// place verdicts and refusals become statuses), audit.go (reports, the database
// checked against the log), crlfetch.go (CRLs from distribution points),
// stats.go (metrics). The HTTPS certificate's upkeep is in internal/gate/tlscert.
package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/signing"
	"nixpki/internal/tlog"
)

// Gate is an open gate directory.
type Gate struct {
	Dir string
	Cfg Config
	Key signing.SecretKey
	Log *slog.Logger
	// Now is the clock; tests may replace it before serving.
	Now func() time.Time
	// OnVerdict, if set before serving, is told each narinfo upload's verdict:
	// admitted, pending or rejected, with a short reason class when rejected.
	OnVerdict func(verdict, reason string)
	// BodyTimeout is how long each chunk of a request body may take to arrive
	// (bodyTimeout when zero).
	BodyTimeout time.Duration

	db    *db
	tlog  *tlog.Log
	trust *trust
	// mu serialises state changes: admissions, certificates, CRLs, expiry.
	mu sync.Mutex
	// admitQ holds narinfo uploads waiting for mu: whoever takes it admits them all,
	// in one transaction and one fsync of the log (batch.go).
	admitMu  sync.Mutex
	admitQ   []*admitReq
	inflight atomic.Int64 // bytes of NAR uploads in progress
	// narDirDirty: a NAR was renamed into G/nar since the directory was last synced.
	narDirDirty atomic.Bool
	narDirSync  groupSync
	// narFiles orders a NAR's rename into G/nar against expiry's removal of the file
	// of a dropped row of the same name.
	narFiles sync.Mutex
}

// Open loads the gate in dir: configuration, key (passwordFile overrides the
// configured password file), root, database and log. The log is verified first: a
// gate whose log was tampered with does not start.
func Open(dir, passwordFile string, log *slog.Logger) (*Gate, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	return open(dir, cfg, passwordFile, log)
}

func open(dir string, cfg Config, passwordFile string, log *slog.Logger) (*Gate, error) {
	if log == nil {
		log = slog.Default()
	}
	key, err := LoadKey(dir, cfg, passwordFile)
	if err != nil {
		return nil, err
	}
	root, err := ReadRoot(dir)
	if err != nil {
		return nil, err
	}
	g := &Gate{Dir: dir, Cfg: cfg, Key: key, Log: log, Now: time.Now, trust: newTrust(root)}
	if g.tlog, err = tlog.Open(filepath.Join(dir, LogDir), key.Key); err != nil {
		return nil, fmt.Errorf("the gate's log %s: %w", filepath.Join(dir, LogDir), err)
	}
	if g.db, err = openDB(filepath.Join(dir, DBFile)); err != nil {
		g.tlog.Close()
		return nil, err
	}
	ctx := context.Background()
	if err := g.loadTrust(ctx); err != nil {
		g.Close()
		return nil, err
	}
	if err := g.cleanNARDir(ctx); err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Close releases the database and the log.
func (g *Gate) Close() error {
	return errors.Join(g.db.Close(), g.tlog.Close())
}

// recordIn is record for a change made in d: with d.ch.logLater the entry is
// written now and fsynced with the rest of the change's entries before it commits.
func (g *Gate) recordIn(d *db, typ string, data any) error {
	if d.ch == nil || !d.ch.logLater {
		return g.record(typ, data)
	}
	if _, _, err := g.tlog.AppendNoSync(typ, data); err != nil {
		return fmt.Errorf("the gate's log: %w", err)
	}
	return nil
}

// record appends an entry to the log; an error fails the operation it records.
func (g *Gate) record(typ string, data any) error {
	if _, _, err := g.tlog.Append(typ, data); err != nil {
		return fmt.Errorf("the gate's log: %w", err)
	}
	return nil
}

// cleanNARDir removes uploads cut short by a crash and NAR files whose row was never
// committed.
func (g *Gate) cleanNARDir(ctx context.Context) error {
	tmp := filepath.Join(g.Dir, tmpDir)
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	known, err := g.db.narURLs(ctx)
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(g.Dir, NARDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Type().IsRegular() && !known[NARDir+"/"+e.Name()] {
			os.Remove(filepath.Join(g.Dir, NARDir, e.Name()))
		}
	}
	return nil
}

// errStagingFull is a NAR upload past staging_max_bytes.
var errStagingFull = errors.New("staging full")

// stagingReader counts an upload's bytes against the staging limit.
type stagingReader struct {
	r      io.Reader
	g      *Gate
	staged int64
	n      int64
}

func (s *stagingReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.staged+s.g.inflight.Add(int64(n)) > s.g.Cfg.StagingMaxBytes {
		return n, errStagingFull
	}
	return n, err
}

// PutNAR receives a NAR file (PUT /nar/…): it is streamed to a temporary file while
// decompressed and checked as a NAR, its name must be the hash of its bytes, and it
// is fsynced and renamed into place before the database knows of it. It waits in
// staging until a narinfo claims it.
func (g *Gate) PutNAR(ctx context.Context, u string, body io.Reader, remote string) (string, error) {
	return g.PutNARNamed(ctx, u, body, remote, NamedByFileHash)
}

// NARNaming says what hash a NAR upload's file name is.
type NARNaming int

const (
	// NamedByFileHash is Nix's naming: the name is the SHA-256 of the (compressed)
	// file, which the gate checks; the narinfo served has that FileHash.
	NamedByFileHash NARNaming = iota
	// NamedByNarHash is nixpki nix push's naming (binarycache.NARNameNarHash): the name is the NarHash, the
	// SHA-256 of the NAR the file decompresses to, which the gate computes anyway; the
	// compressed bytes are not hashed, and the narinfo served has no FileHash (Nix
	// does not need one: it checks the NarHash of what it unpacks).
	NamedByNarHash
)

// PutNARNamed is PutNAR for a file named as naming says.
func (g *Gate) PutNARNamed(ctx context.Context, u string, body io.Reader, remote string, naming NARNaming) (string, error) {
	fail := func(why Rejection, format string, args ...any) (string, error) {
		msg := "NAR " + u + " refused: " + fmt.Sprintf(format, args...)
		g.reject(ctx, "", "", msg, remote)
		return "", rejectErr(why, "%s", msg)
	}
	fileHash, compression, err := binarycache.ParseNARURL(u)
	if err != nil {
		return fail(Invalid, "%v", err)
	}
	held, staged, err := g.db.narHeld(ctx, u)
	if err != nil {
		return "", err
	} else if held {
		// Its age is not refreshed: staging expires by first receipt, so re-sending
		// a NAR cannot keep it (and staging) full.
		return "NAR " + u + " already held", nil
	}
	f, err := createNARFile(filepath.Join(g.Dir, tmpDir), "nar")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sr := &stagingReader{r: body, g: g, staged: staged}
	defer func() { g.inflight.Add(-sr.n) }()
	res, err := receiveNARFile(sr, f, compression, g.Cfg.MaxNARSize, g.Cfg.MaxXZDict, naming == NamedByFileHash)
	var tl errTooLarge
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, errStagingFull):
		return fail(StagingFull, "staging is full (staging_max_bytes %d): NARs wait there until their narinfo comes; retry later", g.Cfg.StagingMaxBytes)
	case errors.As(err, &tl):
		return fail(TooLarge, "%v", tl)
	case errors.As(err, &mbe):
		return fail(TooLarge, "the upload is larger than max_nar_size (%d bytes)", g.Cfg.MaxNARSize)
	case errors.As(err, new(errStalled)):
		return fail(Stalled, "%v", err)
	case errors.As(err, new(errWriting)):
		// The gate's disk, not the upload: a 5xx, so that the uploader retries.
		if errors.Is(err, syscall.ENOSPC) {
			return "", rejectErr(DiskFull, "NAR %s: the gate's disk is full (%v); retry once it has room", u, err)
		}
		return "", fmt.Errorf("NAR %s: %w", u, err)
	case err != nil:
		return fail(Invalid, "%v", err)
	case naming == NamedByNarHash && res.NarHash != fileHash:
		return fail(Invalid, "the NAR's SHA-256 is %s but the file's name says %s (corrupt or altered)", nixhash.FormatSHA256(res.NarHash), nixhash.FormatSHA256(fileHash))
	case naming != NamedByNarHash && res.FileHash != fileHash:
		return fail(Invalid, "the file's SHA-256 is %s but its name says %s (corrupt or altered)", nixhash.FormatSHA256(res.FileHash), nixhash.FormatSHA256(fileHash))
	}
	if err := f.Flush(); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	dst := filepath.Join(g.Dir, filepath.FromSlash(u))
	fileSize := res.FileSize
	g.narFiles.Lock()
	if naming == NamedByNarHash {
		// Concurrent uploads of one NAR may differ in bytes (another encoder) under
		// the one name: the first file stays, so its row and any narinfo describe the
		// file served. Every file under nar/ was verified before it got there.
		err = os.Link(f.Name(), dst)
		if errors.Is(err, fs.ErrExist) {
			var fi os.FileInfo
			if fi, err = os.Stat(dst); err == nil {
				fileSize = fi.Size()
			}
		} else if err != nil {
			err = os.Rename(f.Name(), dst) // no hard links on this file system
		}
	} else {
		err = os.Rename(f.Name(), dst) // the name is the hash of the bytes: the same file
	}
	g.narFiles.Unlock()
	if err != nil {
		return "", err
	}
	// The rename is made durable before the NAR's row exists and before the upload is
	// answered; concurrent uploads share one fsync of G/nar (group commit), which
	// keeps directory syncs off the admissions' serial path.
	if err := g.narDirSync.sync(func() error { return syncDir(filepath.Join(g.Dir, NARDir)) }); err != nil {
		g.narDirDirty.Store(true) // retried before the next admission (syncNARDir)
		return "", err
	}
	rec := narRec{URL: u, Compression: compression, FileHash: res.FileHash, HasFileHash: res.HasFileHash, FileSize: fileSize, NarHash: res.NarHash, NarSize: res.NarSize, ReceivedAt: g.Now()}
	if err := g.db.insertNAR(ctx, rec); err != nil {
		return "", err
	}
	return fmt.Sprintf("received NAR %s: %s, %d bytes (NarHash %s)", u, compression, res.NarSize, nixhash.FormatSHA256(res.NarHash)), nil
}

// syncNARDir makes NAR renames durable; admissions call it before they commit, so a
// committed admission never names a NAR file a power cut could lose. (The file's
// data is fsynced before its rename.)
func (g *Gate) syncNARDir() error {
	if !g.narDirDirty.Swap(false) {
		return nil
	}
	if err := syncDir(filepath.Join(g.Dir, NARDir)); err != nil {
		g.narDirDirty.Store(true)
		return err
	}
	return nil
}

// groupSync runs an fsync on behalf of every caller that asked before it started:
// a caller whose change is made waits for the next sync to start and finish, and
// callers arriving while one runs share the following one.
type groupSync struct {
	mu            sync.Mutex
	cond          *sync.Cond
	running       bool
	asked, synced uint64 // generations: asked by callers, covered by a finished sync
	err           error
}

func (s *groupSync) sync(f func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
	s.asked++
	mine := s.asked
	for s.synced < mine {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		covers := s.asked
		s.mu.Unlock()
		err := f()
		s.mu.Lock()
		s.running = false
		s.cond.Broadcast()
		if err != nil {
			return err // the others retry with a sync of their own
		}
		s.synced = covers
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Expire drops staged NARs older than staging_max_age and pending paths older than
// pending_max_age, and removes NAR files no path or staging row holds.
func (g *Gate) Expire(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.Now()
	pend, err := g.db.pathsInState(ctx, StatePending)
	if err != nil {
		return err
	}
	for _, p := range pend {
		if now.Sub(p.UpdatedAt) <= g.Cfg.PendingMaxAge.D() {
			continue
		}
		if err := g.record("expired", map[string]string{"path": p.StorePath, "nar_hash": nixhash.FormatSHA256(p.NarHash), "reason": p.Reason}); err != nil {
			return err
		}
		if err := g.db.deletePath(ctx, p.Hash, p.NarHash); err != nil {
			return err
		}
	}
	g.narFiles.Lock()
	defer g.narFiles.Unlock()
	urls, err := g.db.dropStaged(ctx, now.Add(-g.Cfg.StagingMaxAge.D()))
	if err != nil {
		return err
	}
	for _, u := range urls {
		if strings.HasPrefix(u, NARDir+"/") && !strings.Contains(u[len(NARDir)+1:], "/") {
			os.Remove(filepath.Join(g.Dir, filepath.FromSlash(u)))
		}
	}
	return nil
}

// Pending lists the paths waiting for signatures or references.
func (g *Gate) Pending(ctx context.Context) ([]PathRec, error) {
	return g.db.pathsInState(ctx, StatePending)
}
