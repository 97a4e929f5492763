package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/signing"
)

// uploader pushes store paths to a gate as nix copy --to 'URL?secret-key=…' would:
// NAR first, then the signed narinfo, a path's narinfo only once its references'
// narinfos were answered (the gate admits a path only after its references).
// Several paths are in flight at once.
type uploader struct {
	cache       *binarycache.Client // the gate
	sec         signing.SecretKey
	compression string
	level       int // zstd level (--compression-level)
	say         func(format string, args ...any)
	admitted    map[string]bool // paths the gate served when the push began
	resignOnly  bool            // only sign again the admitted paths (after nix copy)
	// certsTaken, if set, returns once the gate took the pusher's certificate (an
	// error if it did not): narinfos wait for it, NARs need not.
	certsTaken func() error
	// narinfoSlots bounds the narinfos being sent at once (see push).
	narinfoSlots chan struct{}
	encoders     encoderPool // see encoderPool

	mu                          sync.Mutex
	uploaded, present, narsHeld int
	stored                      int // NARs sent uncompressed by --compression auto
	fileBytes                   int64
	refused                     int
}

// narStream is the request body of a compressed NAR upload: the NAR is dumped from
// the store and compressed straight into the transport's connection as it sends the
// body (io.WriterTo, which the transport's copy of a body of unknown length uses;
// sent chunked). No buffer or temporary file holds the compressed file: its name is
// the NarHash (known from the store's database), not the hash of its bytes. Read
// serves a transport that reads instead, through a pipe.
type narStream struct {
	write func(io.Writer) error // dumps and compresses the NAR into its argument

	mu      sync.Mutex
	closed  bool
	busy    sync.WaitGroup // a WriteTo running
	pr      *io.PipeReader
	done    chan struct{} // closed by Close
	written int64
}

func newNARStream(write func(io.Writer) error) *narStream {
	return &narStream{write: write, done: make(chan struct{})}
}

// start counts a writer of the body in; false once the body is closed.
func (s *narStream) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.busy.Add(1)
	return true
}

func (s *narStream) WriteTo(w io.Writer) (int64, error) {
	if !s.start() {
		return 0, errors.New("NAR upload: body closed")
	}
	defer s.busy.Done()
	cw := &nar.CountWriter{W: w}
	err := s.write(cw)
	s.written = int64(cw.N)
	return s.written, err
}

func (s *narStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if s.pr == nil && !s.closed {
		pr, pw := io.Pipe()
		s.pr = pr
		s.busy.Add(1)
		go func() {
			defer s.busy.Done()
			cw := &nar.CountWriter{W: pw}
			err := s.write(cw)
			s.written = int64(cw.N)
			pw.CloseWithError(err)
		}()
	}
	pr := s.pr
	s.mu.Unlock()
	if pr == nil {
		return 0, errors.New("NAR upload: body closed")
	}
	return pr.Read(p)
}

func (s *narStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.pr != nil {
			s.pr.Close()
		}
		close(s.done)
	}
	return nil
}

// wait returns once the transport closed the body and nothing writes it any more:
// the worker's encoder may then be used again.
func (s *narStream) wait() int64 {
	<-s.done
	s.busy.Wait()
	return s.written
}

// bodyReader is a request body of bytes in a worker's buffer that says when the
// transport closed it.
type bodyReader struct {
	mu     sync.Mutex // a Read and Close may race (net/http closes a body it may still read)
	r      io.Reader  // nil once closed
	once   sync.Once
	closed chan struct{}
}

// wait returns once the transport closed the body: the worker's buffers may then be
// used again.
func (b *bodyReader) wait() { <-b.closed }

// Read reads under the lock: once Close returned, no Read touches the buffer behind
// the body.
func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.r == nil {
		return 0, errors.New("NAR upload: body closed")
	}
	return b.r.Read(p)
}

func (b *bodyReader) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.r = nil
		b.mu.Unlock()
		close(b.closed)
	})
	return nil
}

// queryServed asks the gate, in one status query, which paths it serves already.
func (u *uploader) queryServed(ctx context.Context, infos []pathInfo) error {
	var list strings.Builder
	for _, in := range infos {
		list.WriteString(in.Path + "\n")
	}
	req, err := u.cache.NewRequest(ctx, http.MethodPost, "nixpki/status", strings.NewReader(list.String()))
	if err != nil {
		return err
	}
	status, body, err := u.do(req, 4<<20)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("gate status (HTTP %d): %s", status, strings.TrimSpace(body))
	}
	u.admitted = map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		if p, ok := strings.CutPrefix(l, "admitted "); ok {
			u.admitted[p] = true
		}
	}
	return nil
}

func (u *uploader) push(ctx context.Context, infos []pathInfo, jobs int) error {
	if u.admitted == nil {
		if err := u.queryServed(ctx, infos); err != nil {
			return err
		}
	}
	done := make(map[string]chan struct{}, len(infos))
	for _, in := range infos {
		done[in.Path] = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg, narinfos sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	finish := func(in pathInfo, err error) {
		close(done[in.Path])
		if err != nil && ctx.Err() == nil { // once cancelled, the cause is reported
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
			u.say("%s: %v", in.Path, err)
		}
	}
	// A worker goes on to the next NAR while the narinfo of the last one waits for its
	// references and for the gate's answer (which waits for an fsync of its log):
	// narinfos overlap NAR uploads, and the gate admits those that arrive together
	// with one fsync. At most jobs narinfos are sent at once.
	u.narinfoSlots = make(chan struct{}, jobs)
	u.encoders = newEncoderPool(runtime.GOMAXPROCS(0), u.level)
	for range min(jobs, len(infos)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{}
			for i := range next {
				in := infos[i]
				later, err := u.pushOne(ctx, w, in, done)
				if later == nil {
					finish(in, err)
					continue
				}
				narinfos.Add(1)
				go func() {
					defer narinfos.Done()
					finish(in, later())
				}()
			}
		}()
	}
	// Paths go out in dependency order: a worker waiting for references only waits
	// for paths handed out earlier, which never wait for it.
	for i := range infos {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	narinfos.Wait()
	if err := ctx.Err(); err != nil {
		return err // the push was cancelled: why is reported by whoever cancelled it
	}
	if u.resignOnly {
		u.say("signed again %s the gate served already (narinfo only)", count(u.present, "path"))
	}
	held := ""
	if u.narsHeld > 0 {
		held = fmt.Sprintf("; %d NARs the gate held already", u.narsHeld)
	}
	if !u.resignOnly {
		comp := u.compression + " NARs"
		switch {
		case u.compression == "auto" && u.stored > 0:
			comp = fmt.Sprintf("NARs, zstd but %d uncompressed: they looked incompressible", u.stored)
		case u.compression == "auto":
			comp = "zstd NARs"
		}
		u.say("uploaded %s (%.1f MiB of %s%s), %d already served by the gate (narinfo signed again, no NAR sent), %d answered otherwise than admitted",
			count(u.uploaded, "path"), float64(u.fileBytes)/(1<<20), comp, held, u.present, u.refused)
	}
	if len(errs) > 0 {
		return fmt.Errorf("uploading %s failed: %w", count(len(errs), "path"), errors.Join(errs...))
	}
	return nil
}

// pushOne uploads one path's NAR unless the gate serves it already, and returns what
// is left to do, the narinfo's upload (nil: nothing), which the caller runs once
// the worker can go on. Errors are only failures to talk to the gate or to read the
// store (the gate's verdicts are reported by the status query).
func (u *uploader) pushOne(ctx context.Context, w *worker, in pathInfo, done map[string]chan struct{}) (later func() error, err error) {
	// A pending or quarantined path is uploaded again so the gate merges the
	// signatures; for a path the gate serves, only the narinfo is sent again, signed
	// by this key (below), so that every path of the closure carries every pusher's
	// signature: a threshold holds for the whole closure of the path it protects.
	narHash, err := nixhash.ParseSHA256(in.NarHash)
	if err != nil {
		return nil, fmt.Errorf("narHash: %w", err)
	}
	ni := &narinfo.NarInfo{StorePath: in.Path, Compression: u.compression, NarHash: narHash, NarSize: in.NarSize}
	for _, r := range in.References {
		ni.References = append(ni.References, filepath.Base(r))
	}
	if in.Deriver != "" {
		ni.Deriver = filepath.Base(in.Deriver)
	}
	if in.CA != "" {
		ca, err := contentaddress.Parse(in.CA)
		if err != nil {
			return nil, err
		}
		ni.CA = ca.String()
	}
	for _, s := range in.Signatures {
		if sig, err := signing.ParseSignature(s); err == nil && sig.Name != u.sec.Name {
			ni.Sigs = append(ni.Sigs, sig)
		}
	}
	fp, err := ni.Fingerprint()
	if err != nil {
		return nil, err
	}
	ni.Sigs = append(ni.Sigs, u.sec.Sign(fp))
	if u.admitted[in.Path] {
		return func() error { return u.resign(ctx, ni, in, done) }, nil
	}
	if u.resignOnly {
		return nil, nil
	}

	// The NAR file is named by its NarHash (the gate checks it, as it must, and
	// need not hash the compressed bytes: see binarycache.NARNameNarHash); so it streams
	// from the store, compressed on the way, while it is sent. Uncompressed, the file
	// is the NAR and its size is known.
	body, size, stream, comp, err := u.narBody(w, in)
	if err != nil {
		return nil, err
	}
	ni.Compression = comp
	ni.FileHash, ni.FileSize = nil, 0
	ni.URL = binarycache.NARURL(narHash, comp)
	// A NAR the gate holds already (staged, or for a pending path) need not come again:
	// the upload asks first (Expect: 100-continue), and the gate answers at once,
	// without reading the body, when it holds the file. One request per NAR, not a
	// HEAD and a PUT.
	status, msg, err := reply(u.cache.PutNAR(ctx, ni.URL, body, size, true))
	// The transport may still hold the body after Do returns (an early answer); the
	// worker's encoder is reused, so wait until it closed the body.
	if stream != nil {
		size = stream.wait()
	} else {
		body.(*bodyReader).wait()
	}
	switch {
	case err != nil:
		return nil, err
	case status/100 != 2:
		// The gate logged why; the narinfo would be rejected for the missing NAR.
		u.count(func() { u.refused++ })
		u.say("gate: %s", strings.TrimSpace(msg))
		return nil, nil
	case strings.HasSuffix(strings.TrimSpace(msg), " already held"):
		u.count(func() { u.narsHeld++ })
	default:
		u.count(func() {
			u.fileBytes += size
			if comp == "none" && u.compression == "auto" {
				u.stored++
			}
		})
	}
	return func() error {
		status, msg, err := u.putNarInfo(ctx, ni, in, done)
		if err != nil {
			return err
		}
		if status/100 != 2 {
			u.count(func() { u.refused++ })
			u.say("gate: %s", strings.TrimSpace(msg))
			return nil
		}
		u.count(func() { u.uploaded++ })
		return nil
	}, nil
}

// putNarInfo sends ni once the references of in were answered.
func (u *uploader) putNarInfo(ctx context.Context, ni *narinfo.NarInfo, in pathInfo, done map[string]chan struct{}) (int, string, error) {
	text, err := ni.MarshalText()
	if err != nil {
		return 0, "", err
	}
	if u.certsTaken != nil {
		if err := u.certsTaken(); err != nil {
			return 0, "", err
		}
	}
	for _, r := range in.References {
		if r == in.Path {
			continue
		}
		select {
		case <-done[r]:
		case <-ctx.Done():
			return 0, "", ctx.Err()
		}
	}
	if u.narinfoSlots != nil { // taken once the references are answered: no wait holds one
		select {
		case u.narinfoSlots <- struct{}{}:
			defer func() { <-u.narinfoSlots }()
		case <-ctx.Done():
			return 0, "", ctx.Err()
		}
	}
	return reply(u.cache.PutNarInfo(ctx, in.Path, text))
}

// resign sends again the narinfo of a path the gate serves, signed by this key, so
// that the gate records this identity's signature on it too. It names the NAR the
// gate serves (no NAR is uploaded). The gate refuses it if it serves other content.
func (u *uploader) resign(ctx context.Context, ni *narinfo.NarInfo, in pathInfo, done map[string]chan struct{}) error {
	served, err := u.cache.NarInfo(ctx, filepath.Dir(in.Path), in.Path)
	var refused *binarycache.StatusError
	if errors.As(err, &refused) {
		return fmt.Errorf("the gate served it when the push began, now answers HTTP %d: %s", refused.Status, strings.TrimSpace(refused.Body))
	}
	if err != nil {
		return fmt.Errorf("the gate's narinfo: %w", err)
	}
	if served.NarHash != ni.NarHash || served.NarSize != ni.NarSize {
		return fmt.Errorf("the gate serves other content for it (NarHash %s, %d bytes; the local store has %s, %d bytes)",
			nixhash.FormatSHA256(served.NarHash), served.NarSize, nixhash.FormatSHA256(ni.NarHash), ni.NarSize)
	}
	ni.URL, ni.Compression, ni.FileHash, ni.FileSize = served.URL, served.Compression, served.FileHash, served.FileSize
	status, msg, err := u.putNarInfo(ctx, ni, in, done)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		// The gate serves this path but refuses this signature on it: the closure
		// it serves is not the one signed here.
		u.count(func() { u.refused++ })
		return fmt.Errorf("the gate serves it but refuses this signature: %s", strings.TrimSpace(msg))
	}
	u.count(func() { u.present++ })
	return nil
}

func (u *uploader) count(f func()) {
	u.mu.Lock()
	f()
	u.mu.Unlock()
}

func (u *uploader) do(req *http.Request, max int64) (int, string, error) {
	return reply(u.cache.Do(req, max))
}

// reply unpacks the gate's answer; a request that got none fails naming the gate.
func reply(r binarycache.Reply, err error) (int, string, error) {
	if err != nil && r.Status == 0 {
		return 0, "", fmt.Errorf("gate: %w", err)
	}
	return r.Status, r.Body, err
}
