package verify

import (
	"bufio"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"nixpki/internal/nix/localstore"
	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/storepath"
)

// errAbsent is a cache's "no such file" (404 and 403 over HTTP, as Nix reads them).
var errAbsent = errors.New("not in the cache")

// CacheStore reads a binary cache: http://, https:// or file://. It fetches
// narinfos and, when contents are checked, streams, decompresses and hashes NARs.
type CacheStore struct {
	base     *url.URL
	dir      string // for file:// caches
	client   *http.Client
	storeDir string
}

// IsCacheURL reports whether s names a binary cache rather than a local store.
func IsCacheURL(s string) bool {
	for _, p := range []string{"http://", "https://", "file://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// OpenCache opens the binary cache at rawURL and reads its nix-cache-info. client
// may be nil for a default one.
func OpenCache(ctx context.Context, rawURL string, client *http.Client) (*CacheStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("binary cache URL %q: %w", rawURL, err)
	}
	u.RawQuery, u.Fragment = "", "" // Nix's store parameters (?compression=…) do not matter to readers
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &CacheStore{base: u, client: client, storeDir: storepath.DefaultStoreDir}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("binary cache URL %q: a file:// URL must not name a host", rawURL)
		}
		c.dir = filepath.FromSlash(u.Path)
	case "http", "https":
		if c.client == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 32
			t.ResponseHeaderTimeout = time.Minute
			c.client = &http.Client{Transport: t} // no overall timeout: NARs may be large
		}
	default:
		return nil, fmt.Errorf("binary cache URL %q: unsupported scheme %q (want http, https or file)", rawURL, u.Scheme)
	}
	rc, err := c.get(ctx, "nix-cache-info")
	if err != nil {
		return nil, fmt.Errorf("binary cache %s: nix-cache-info: %w", c, err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(io.LimitReader(rc, 64<<10))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "StoreDir: "); ok {
			if err := storepath.ValidateStoreDir(v); err != nil {
				return nil, fmt.Errorf("binary cache %s: nix-cache-info: %w", c, err)
			}
			c.storeDir = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("binary cache %s: nix-cache-info: %w", c, err)
	}
	return c, nil
}

// String is the cache's URL.
func (c *CacheStore) String() string { return c.base.String() }

// StoreDir is the cache's store directory (nix-cache-info's StoreDir).
func (c *CacheStore) StoreDir() string { return c.storeDir }

// Close releases idle connections.
func (c *CacheStore) Close() error {
	if c.client != nil {
		c.client.CloseIdleConnections()
	}
	return nil
}

// get opens a file of the cache, rel being relative to the cache's root.
func (c *CacheStore) get(ctx context.Context, rel string) (io.ReadCloser, error) {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains(rel, "://") || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." {
		return nil, fmt.Errorf("refusing file name %q: not a plain path inside the cache", rel)
	}
	if c.dir != "" {
		f, err := os.Open(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if errors.Is(err, os.ErrNotExist) {
			return nil, errAbsent
		}
		return f, err
	}
	u := *c.base
	u.Path += "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		resp.Body.Close()
		return nil, errAbsent
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	}
	return resp.Body, nil
}

// Resolve maps an argument to a store path (a store path, a path inside one, or a
// symlink leading to one).
func (c *CacheStore) Resolve(arg string) (string, error) {
	return localstore.ResolveArg(arg, c.storeDir, c.storeDir)
}

// Info fetches and parses the path's narinfo.
func (c *CacheStore) Info(ctx context.Context, p string) (*PathInfo, error) {
	if _, err := storepath.Parse(c.storeDir, p); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	var err error
	for attempt := 0; ; attempt++ {
		rc, err = c.get(ctx, storepath.HashPart(p)+".narinfo")
		if err == nil || errors.Is(err, errAbsent) || attempt == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
	}
	if errors.Is(err, errAbsent) {
		return nil, fmt.Errorf("path '%s' %w in %s", p, ErrNotValid, c)
	}
	if err != nil {
		return nil, fmt.Errorf("fetching the narinfo of '%s': %w", p, err)
	}
	defer rc.Close()
	ni, err := narinfo.Parse(rc, c.storeDir)
	if err != nil {
		return nil, fmt.Errorf("the narinfo of '%s': %w", p, err)
	}
	if ni.StorePath != p {
		return nil, fmt.Errorf("the narinfo of '%s' describes '%s'", p, ni.StorePath)
	}
	return pathinfo.FromNarInfo(c.storeDir, ni), nil
}

// Contents downloads the path's NAR, decompresses and parses it, and returns its
// hash and size; what a content address covers goes to ca, if not nil. Damage to
// the data (a broken compressed stream, a malformed NAR) is reported as corrupt.
func (c *CacheStore) Contents(ctx context.Context, pi *PathInfo, ca *caHash) (sum [32]byte, size uint64, err error) {
	rc, err := c.get(ctx, pi.URL)
	if errors.Is(err, errAbsent) {
		return sum, 0, fmt.Errorf("its NAR %s is missing from the cache", pi.URL)
	}
	if err != nil {
		return sum, 0, fmt.Errorf("fetching its NAR %s: %w", pi.URL, err)
	}
	defer rc.Close()
	r, err := decompressor(pi.Compression, rc)
	if err != nil {
		return sum, 0, err
	}
	defer r.Close()
	h := sha256.New()
	var w io.Writer = h
	if ca != nil && ca.recursive {
		w = io.MultiWriter(h, ca.h)
	}
	cw := &nar.CountWriter{W: w}
	nr := nar.NewReader(io.TeeReader(&readErrMarker{r: r}, cw))
	first := true
	for {
		e, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var re *readError
			if errors.As(err, &re) && !re.corrupt {
				return sum, 0, fmt.Errorf("reading its NAR %s: %w", pi.URL, re.err)
			}
			return sum, 0, corruptf("its NAR %s is damaged: %v", pi.URL, err)
		}
		if first && ca != nil && !ca.recursive {
			if e.Type != nar.Regular && e.Type != nar.Executable {
				return sum, 0, corruptf("its content address covers a single file, but its NAR holds a %s", e.Type)
			}
			if _, err := io.Copy(ca.h, nr); err != nil {
				return sum, 0, corruptf("its NAR %s is damaged: %v", pi.URL, err)
			}
		}
		first = false
	}
	copy(sum[:], h.Sum(nil))
	return sum, cw.N, nil
}

// readError tells a failure to read the cache (network, disk) from damage to the
// compressed stream, which decompressors report as plain errors.
type readError struct {
	err     error
	corrupt bool
}

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// readErrMarker wraps a decompressed stream's errors so that the NAR reader's
// errors can be told apart from them.
type readErrMarker struct{ r io.Reader }

func (m *readErrMarker) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && err != io.EOF {
		var tr *transportError
		err = &readError{err: err, corrupt: !errors.As(err, &tr)}
	}
	return n, err
}

// transportError marks errors of the underlying cache file, not of decompression.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

type transportReader struct{ r io.Reader }

func (t transportReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = &transportError{err: err}
	}
	return n, err
}

// decompressor undoes a narinfo's Compression.
func decompressor(method string, r io.Reader) (io.ReadCloser, error) {
	r = transportReader{r: bufio.NewReaderSize(r, 256<<10)}
	switch method {
	case "none", "":
		return io.NopCloser(r), nil
	case "xz":
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, corruptf("its NAR's xz stream is damaged: %v", err)
		}
		return io.NopCloser(xr), nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	case "bzip2":
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("its NAR is compressed with %q, which nixpki verify does not read (it reads none, xz, zstd and bzip2)", method)
}
