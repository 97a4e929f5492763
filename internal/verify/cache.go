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
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/localstore"
	"nixpki/internal/nix/nar"
)

// CacheStore reads a binary cache: http://, https:// or file://. It fetches
// narinfos and, when contents are checked, streams, decompresses and hashes NARs.
type CacheStore struct {
	client   *binarycache.Client
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
	bc, err := binarycache.New(rawURL, client)
	if err != nil {
		return nil, err
	}
	info, err := bc.CacheInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("binary cache %s: nix-cache-info: %w", bc, err)
	}
	return &CacheStore{client: bc, storeDir: info.StoreDir}, nil
}

// String is the cache's URL.
func (c *CacheStore) String() string { return c.client.String() }

// StoreDir is the cache's store directory (nix-cache-info's StoreDir).
func (c *CacheStore) StoreDir() string { return c.storeDir }

// Close releases idle connections.
func (c *CacheStore) Close() error { return c.client.Close() }

// Resolve maps an argument to a store path (a store path, a path inside one, or a
// symlink leading to one).
func (c *CacheStore) Resolve(arg string) (string, error) {
	return localstore.ResolveArg(arg, c.storeDir, c.storeDir)
}

// Info fetches and parses the path's narinfo.
func (c *CacheStore) Info(ctx context.Context, p string) (*PathInfo, error) {
	return c.client.Info(ctx, c.storeDir, p)
}

// Contents downloads the path's NAR, decompresses and parses it, and returns its
// hash and size; what a content address covers goes to ca, if not nil. Damage to
// the data (a broken compressed stream, a malformed NAR) is reported as corrupt.
func (c *CacheStore) Contents(ctx context.Context, pi *PathInfo, ca *caHash) (sum [32]byte, size uint64, err error) {
	rc, err := c.client.NAR(ctx, pi.URL, int64(pi.FileSize))
	if errors.Is(err, binarycache.ErrAbsent) {
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
	// A NAR longer than its NarSize is damaged: stop there rather than hash
	// whatever the cache's stream decompresses to.
	nr := nar.NewReader(io.TeeReader(&readErrMarker{r: &sizeCap{r: r, left: pi.NarSize, size: pi.NarSize}}, cw))
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

// readError tells a failure to read the cache (network, disk: a
// binarycache.BodyError) from damage to the compressed stream, which
// decompressors report as plain errors.
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
		var be *binarycache.BodyError
		err = &readError{err: err, corrupt: !errors.As(err, &be)}
	}
	return n, err
}

// sizeCap fails a read past the NAR's recorded size.
type sizeCap struct {
	r          io.Reader
	left, size uint64
}

func (c *sizeCap) Read(p []byte) (int, error) {
	if c.left == 0 {
		var one [1]byte
		if n, err := c.r.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, fmt.Errorf("it is longer than its NarSize (%d bytes)", c.size)
	}
	if uint64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= uint64(n)
	return n, err
}

// decompressor undoes a narinfo's Compression.
func decompressor(method string, r io.Reader) (io.ReadCloser, error) {
	r = bufio.NewReaderSize(r, 256<<10)
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
