package tlog

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// File names inside a log directory.
const (
	EntriesFile = "entries"   // one record per line: entry JSON, tab, tree head JSON
	HeadFile    = "head.json" // the newest signed tree head
	// MaxRecordLen bounds one record (entry and tree head); longer lines are damage.
	MaxRecordLen = 1 << 20
)

// Entry is one logged event. Its canonical bytes (Marshal) are what the leaf hashes.
type Entry struct {
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// timeLayout renders entry and head times: UTC, fixed width, nanoseconds.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

type entryJSON struct {
	Type string          `json:"type"`
	Time string          `json:"time"`
	Data json.RawMessage `json:"data"`
}

// Marshal renders the entry canonically: compact JSON with the keys type, time, data
// in that order, the time in UTC with nanoseconds.
func (e Entry) Marshal() ([]byte, error) {
	if e.Type == "" {
		return nil, errors.New("tlog: entry has no type")
	}
	var data bytes.Buffer
	if len(e.Data) == 0 {
		data.WriteString("null")
	} else if err := json.Compact(&data, e.Data); err != nil {
		return nil, fmt.Errorf("tlog: entry data: %w", err)
	}
	return json.Marshal(entryJSON{Type: e.Type, Time: e.Time.UTC().Format(timeLayout), Data: data.Bytes()})
}

// parseEntry reads an entry in canonical form: parsing and re-marshalling must give
// back the same bytes.
func parseEntry(b []byte) (Entry, error) {
	var j entryJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Entry{}, fmt.Errorf("not an entry: %w", err)
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("entry time %q: %w", j.Time, err)
	}
	e := Entry{Type: j.Type, Time: t, Data: j.Data}
	again, err := e.Marshal()
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, b) {
		return Entry{}, errors.New("entry is not in canonical form")
	}
	return e, nil
}

// Head is a signed tree head: the log's name, its size, the root hash of its first
// Size entries and when it was signed.
type Head struct {
	Origin string    `json:"origin"`
	Size   uint64    `json:"size"`
	Root   Hash      `json:"root"`
	Time   time.Time `json:"time"`
	Sig    []byte    `json:"sig"`
}

// MarshalText renders a hash in standard base64.
func (h Hash) MarshalText() ([]byte, error) {
	return []byte(base64.StdEncoding.EncodeToString(h[:])), nil
}

// UnmarshalText reads a hash in standard base64.
func (h *Hash) UnmarshalText(b []byte) error {
	d, err := base64.StdEncoding.DecodeString(string(b))
	if err != nil || len(d) != len(h) {
		return fmt.Errorf("hash %.60q is not %d bytes in base64", b, len(h))
	}
	copy(h[:], d)
	return nil
}

// String is the hash in base64.
func (h Hash) String() string { return base64.StdEncoding.EncodeToString(h[:]) }

// SignedMessage is what the signature of a tree head covers. Its first line keeps it
// apart from anything else the same key signs (Nix fingerprints begin "1;").
func (h Head) SignedMessage() []byte {
	return []byte("nixpki-tlog tree head v1\n" + h.Origin + "\n" + strconv.FormatUint(h.Size, 10) + "\n" +
		h.Root.String() + "\n" + strconv.FormatInt(h.Time.UnixNano(), 10) + "\n")
}

// Verify checks the head's signature with pub.
func (h Head) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || len(h.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, h.SignedMessage(), h.Sig) {
		return errors.New("tree head signature does not verify with the log's key")
	}
	return nil
}

func (h Head) marshal() []byte {
	type headJSON struct {
		Origin string `json:"origin"`
		Size   uint64 `json:"size"`
		Root   Hash   `json:"root"`
		Time   string `json:"time"`
		Sig    []byte `json:"sig"`
	}
	b, _ := json.Marshal(headJSON{h.Origin, h.Size, h.Root, h.Time.UTC().Format(timeLayout), h.Sig})
	return b
}

// ParseHead reads a tree head as written in records, in the head file and by
// nixpki log head.
func ParseHead(b []byte) (Head, error) {
	var j struct {
		Origin string `json:"origin"`
		Size   uint64 `json:"size"`
		Root   Hash   `json:"root"`
		Time   string `json:"time"`
		Sig    []byte `json:"sig"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Head{}, fmt.Errorf("not a tree head: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Head{}, errors.New("not a tree head: data after it")
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Head{}, fmt.Errorf("tree head time %q: %w", j.Time, err)
	}
	h := Head{Origin: j.Origin, Size: j.Size, Root: j.Root, Time: t, Sig: j.Sig}
	if !bytes.Equal(h.marshal(), b) {
		return Head{}, errors.New("tree head is not in canonical form")
	}
	return h, nil
}

// MarshalJSON renders the head as in the log files.
func (h Head) MarshalJSON() ([]byte, error) { return h.marshal(), nil }

// Log is an open log, appended to by one process at a time. Methods are safe for
// concurrent use.
type Log struct {
	mu     sync.Mutex
	dir    string
	f      *os.File
	key    ed25519.PrivateKey
	origin string
	fr     frontier
	leaves []Hash
	head   Head
	now    func() time.Time

	// The head file is a checkpoint: rewritten at most once per headEvery while
	// entries come (a create, write and rename of its own per entry cost more than
	// the entry's fsync), by a timer after the last of them, and on Close. Every
	// record carries its own signed head, so the head file lagging a second behind
	// loses nothing Verify needs; it only bounds how far back a cut of the entries
	// file goes unnoticed without a head kept elsewhere (it is not fsynced either).
	headEvery   time.Duration
	headWritten time.Time // when the head file was last written
	headDirty   bool      // the head file is behind l.head
	headTimer   *time.Timer
	closed      bool

	// Group commit: AppendNoSync writes records that the next Sync (or Append)
	// fsyncs, all at once. durable is the head of the records fsynced: Head returns
	// it and the head file holds it, so neither names an entry a crash could lose.
	unsynced bool
	durable  Head
	err      error // a failed write or fsync: the log takes no more entries
}

// headInterval is how often an open log rewrites its head file at most.
const headInterval = time.Second

// Create makes an empty log in dir (created 0700 if needed) named origin, with a
// signed head of size zero. It refuses to overwrite an existing log.
func Create(dir, origin string, key ed25519.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, EntriesFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	h := sign(Head{Origin: origin, Root: emptyRoot, Time: time.Now()}, key)
	return writeHead(dir, h, true)
}

func sign(h Head, key ed25519.PrivateKey) Head {
	h.Time = h.Time.UTC().Truncate(time.Microsecond)
	h.Sig = ed25519.Sign(key, h.SignedMessage())
	return h
}

// writeHead replaces the head file atomically.
func writeHead(dir string, h Head, durable bool) error {
	tmp, err := os.CreateTemp(dir, ".head-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(h.marshal(), '\n')); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, HeadFile))
}

// Open verifies the log in dir with key's public half (see Verify) and opens it for
// appending. A record cut short by a crash during its write (no final newline, beyond
// the head file) is removed first: its Append never returned.
func Open(dir string, key ed25519.PrivateKey) (*Log, error) {
	pub := key.Public().(ed25519.PublicKey)
	if err := repairTornTail(dir); err != nil {
		return nil, err
	}
	v, err := Verify(dir, pub)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, EntriesFile), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: dir, f: f, key: key, origin: v.Head.Origin, head: v.Head, now: time.Now, leaves: make([]Hash, 0, len(v.Records)), headEvery: headInterval}
	for _, r := range v.Records {
		l.fr.push(r.Leaf)
		l.leaves = append(l.leaves, r.Leaf)
	}
	if len(v.Records) > 0 {
		l.head = v.Records[len(v.Records)-1].Head
	}
	l.durable = l.head
	return l, nil
}

func repairTornTail(dir string) error {
	p := filepath.Join(dir, EntriesFile)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	// Find the last newline.
	size := fi.Size()
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
		if size-end > MaxRecordLen {
			break
		}
	}
	if end == size {
		return nil
	}
	if size-end > MaxRecordLen+1 {
		return fmt.Errorf("tlog %s: the last %d bytes have no newline: damaged beyond a torn write", p, size-end)
	}
	// Only a record beyond the head file can be torn.
	hb, err := os.ReadFile(filepath.Join(dir, HeadFile))
	if err != nil {
		return err
	}
	h, err := ParseHead(bytes.TrimSpace(hb))
	if err != nil {
		return fmt.Errorf("tlog %s: %w", filepath.Join(dir, HeadFile), err)
	}
	n, err := countLines(f, end)
	if err != nil {
		return err
	}
	if n < h.Size {
		return nil // Verify reports the truncation
	}
	if err := f.Truncate(end); err != nil {
		return err
	}
	return f.Sync()
}

func countLines(f *os.File, end int64) (uint64, error) {
	var n uint64
	r := bufio.NewReader(io.NewSectionReader(f, 0, end))
	for {
		_, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// Append adds an entry of type typ with data (marshalled to JSON) at the current
// time, signs the new tree head and writes both as one record, fsynced before it
// returns. It returns the entry's index and the new head.
func (l *Log) Append(typ string, data any) (uint64, Head, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, h, err := l.appendLocked(typ, data)
	if err != nil {
		return 0, Head{}, err
	}
	if err := l.syncLocked(); err != nil {
		return 0, Head{}, err
	}
	return i, h, nil
}

// AppendNoSync is Append without the fsync: the entry is durable once a later Sync
// or Append returns, which fsyncs every entry written before it in one go (group
// commit). Until then Head does not include it. A caller must not act on the entry
// (commit what it records) before that.
func (l *Log) AppendNoSync(typ string, data any) (uint64, Head, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.appendLocked(typ, data)
}

// Sync makes every entry written so far durable (one fsync, none if there is
// nothing to sync).
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncLocked()
}

func (l *Log) appendLocked(typ string, data any) (uint64, Head, error) {
	if l.err != nil {
		return 0, Head{}, l.err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, Head{}, fmt.Errorf("tlog: %w", err)
	}
	now := l.now().UTC()
	if now.Before(l.head.Time) {
		now = l.head.Time // keep times non-decreasing across clock steps
	}
	eb, err := Entry{Type: typ, Time: now, Data: raw}.Marshal()
	if err != nil {
		return 0, Head{}, err
	}
	leaf := LeafHash(eb)
	fr := frontier{n: l.fr.n, stack: append([]Hash(nil), l.fr.stack...)}
	fr.push(leaf)
	h := sign(Head{Origin: l.origin, Size: fr.n, Root: fr.root(), Time: now}, l.key)
	rec := append(append(eb, '\t'), h.marshal()...)
	rec = append(rec, '\n')
	if len(rec) > MaxRecordLen {
		return 0, Head{}, fmt.Errorf("tlog: record of %d bytes exceeds %d", len(rec), MaxRecordLen)
	}
	if _, err := l.f.Write(rec); err != nil {
		// Part of the record may be in the file: nothing more may follow it until
		// Open has cut it off (a record cut short is removed there).
		l.err = fmt.Errorf("tlog: appending: %w (the log takes no more entries; restart, which repairs it)", err)
		return 0, Head{}, l.err
	}
	l.fr, l.head = fr, h
	l.leaves = append(l.leaves, leaf)
	l.unsynced = true
	return h.Size - 1, h, nil
}

func (l *Log) syncLocked() error {
	if l.err != nil {
		return l.err
	}
	if !l.unsynced {
		return nil
	}
	if err := l.f.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the unwritten pages: what
		// the file holds is unknown until it is read again.
		l.err = fmt.Errorf("tlog: fsync: %w (the log takes no more entries; restart, which checks it)", err)
		return l.err
	}
	l.unsynced = false
	l.durable = l.head
	l.headDirty = true
	if wall := time.Now(); wall.Sub(l.headWritten) >= l.headEvery || wall.Before(l.headWritten) {
		if err := l.writeHeadLocked(); err != nil {
			return err
		}
	} else if l.headTimer == nil {
		l.headTimer = time.AfterFunc(l.headEvery, l.flushHead)
	}
	return nil
}

// writeHeadLocked brings the head file up to l.durable (l.mu held).
func (l *Log) writeHeadLocked() error {
	if !l.headDirty {
		return nil
	}
	if err := writeHead(l.dir, l.durable, false); err != nil {
		return fmt.Errorf("tlog: head file: %w", err)
	}
	l.headDirty, l.headWritten = false, time.Now()
	return nil
}

// flushHead writes a head file left behind by Append (the timer's function). A
// failure is retried by the next Append or Close.
func (l *Log) flushHead() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.headTimer = nil
	if !l.closed {
		l.writeHeadLocked()
	}
}

// Head returns the newest signed tree head of the entries made durable.
func (l *Log) Head() Head {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable
}

// InclusionProof proves entry index is in the tree of size n.
func (l *Log) InclusionProof(index, n uint64) ([]Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return InclusionProof(l.leaves, index, n)
}

// ConsistencyProof proves the tree of size m is a prefix of the tree of size n.
func (l *Log) ConsistencyProof(m, n uint64) ([]Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ConsistencyProof(l.leaves, m, n)
}

// Close writes the head file if it is behind, and closes the entries file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.f.Close() // reports the file already closed
	}
	l.closed = true
	if l.headTimer != nil {
		l.headTimer.Stop()
		l.headTimer = nil
	}
	serr := l.syncLocked() // entries written by AppendNoSync and not synced yet
	herr := l.writeHeadLocked()
	if err := l.f.Close(); err != nil {
		return err
	}
	return errors.Join(serr, herr)
}
