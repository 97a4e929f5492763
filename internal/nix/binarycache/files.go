package binarycache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/storepath"
)

// MaxCacheInfoSize bounds the nix-cache-info files ParseCacheInfo reads; real
// ones are three short lines.
const MaxCacheInfoSize = 64 << 10

// CacheInfo is what a cache's nix-cache-info says that a reader needs.
type CacheInfo struct {
	StoreDir string // the store directory its paths are in; /nix/store if not given
}

// ParseCacheInfo reads a nix-cache-info file: "Key: value" lines, of which
// StoreDir is checked and kept; other lines are ignored, as Nix ignores them.
// Input longer than MaxCacheInfoSize is rejected.
func ParseCacheInfo(r io.Reader) (CacheInfo, error) {
	info := CacheInfo{StoreDir: storepath.DefaultStoreDir}
	data, err := io.ReadAll(io.LimitReader(r, MaxCacheInfoSize+1))
	if err != nil {
		return info, fmt.Errorf("reading: %w", err)
	}
	if len(data) > MaxCacheInfoSize {
		return info, fmt.Errorf("larger than %d bytes", MaxCacheInfoSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxCacheInfoSize+1)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "StoreDir: "); ok {
			if err := storepath.ValidateStoreDir(v); err != nil {
				return info, err
			}
			info.StoreDir = v
		}
	}
	return info, sc.Err()
}

// CacheInfo fetches and parses the cache's nix-cache-info.
func (c *Client) CacheInfo(ctx context.Context) (CacheInfo, error) {
	rc, err := c.Get(ctx, "nix-cache-info")
	if err != nil {
		return CacheInfo{}, err
	}
	defer rc.Close()
	return ParseCacheInfo(rc)
}

// NarInfo fetches and parses the narinfo of storePath, a path of storeDir. A
// fetch that fails otherwise than by a missing file is tried three times in
// all. Errors of the fetch wrap ErrAbsent for a missing narinfo and
// *StatusError for other HTTP answers; the narinfo is read up to
// narinfo.MaxSize and must describe storePath.
func (c *Client) NarInfo(ctx context.Context, storeDir, storePath string) (*narinfo.NarInfo, error) {
	if _, err := storepath.Parse(storeDir, storePath); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	var err error
	for attempt := 0; ; attempt++ {
		rc, err = c.Get(ctx, storepath.HashPart(storePath)+".narinfo")
		if err == nil || errors.Is(err, ErrAbsent) || attempt == 2 {
			break
		}
		select {
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("fetching the narinfo of '%s': %w", storePath, err)
	}
	defer rc.Close()
	ni, err := narinfo.Parse(rc, storeDir)
	if err != nil {
		return nil, fmt.Errorf("the narinfo of '%s': %w", storePath, err)
	}
	if ni.StorePath != storePath {
		return nil, fmt.Errorf("the narinfo of '%s' describes '%s'", storePath, ni.StorePath)
	}
	return ni, nil
}

// Info is NarInfo as a store's record of the path: a missing narinfo is an
// error wrapping pathinfo.ErrNotValid.
func (c *Client) Info(ctx context.Context, storeDir, storePath string) (*pathinfo.Info, error) {
	ni, err := c.NarInfo(ctx, storeDir, storePath)
	if errors.Is(err, ErrAbsent) {
		return nil, fmt.Errorf("path '%s' %w in %s", storePath, pathinfo.ErrNotValid, c)
	}
	if err != nil {
		return nil, err
	}
	return pathinfo.FromNarInfo(storeDir, ni), nil
}

// NAR opens the NAR file at narURL (a narinfo's URL), compressed as stored.
// With limit > 0, a file longer than limit bytes (the narinfo's FileSize) fails
// to read past it. Errors are Get's.
func (c *Client) NAR(ctx context.Context, narURL string, limit int64) (io.ReadCloser, error) {
	rc, err := c.Get(ctx, narURL)
	if err != nil || limit <= 0 {
		return rc, err
	}
	return &limitedFile{ReadCloser: rc, name: narURL, left: limit, limit: limit}, nil
}

// limitedFile fails a read past the size the narinfo gives the file, rather
// than read whatever the cache sends.
type limitedFile struct {
	io.ReadCloser
	name        string
	left, limit int64
}

func (f *limitedFile) Read(p []byte) (int, error) {
	if f.left <= 0 {
		var one [1]byte
		n, err := f.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("NAR file %s is larger than the %d bytes its narinfo gives (FileSize)", f.name, f.limit)
		}
		return 0, err
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.ReadCloser.Read(p)
	f.left -= int64(n)
	return n, err
}

// PutNAR uploads a NAR file to narURL (as its narinfo will name it), size bytes
// long (-1: unknown, sent chunked). It asks first (Expect: 100-continue), so
// that a cache holding the file already can answer without the body. With
// namedByNarHash, narURL is named by the NarHash, not by the file's hash
// (NARNameHeader). The body is closed, as http.Client closes it, even on
// errors.
func (c *Client) PutNAR(ctx context.Context, narURL string, body io.Reader, size int64, namedByNarHash bool) (Reply, error) {
	req, err := c.NewRequest(ctx, http.MethodPut, narURL, body)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
		return Reply{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-nix-nar")
	req.Header.Set("Expect", "100-continue")
	if namedByNarHash {
		req.Header.Set(NARNameHeader, NARNameNarHash)
	}
	return c.Do(req, 64<<10)
}

// PutNarInfo uploads the narinfo text of storePath.
func (c *Client) PutNarInfo(ctx context.Context, storePath string, text []byte) (Reply, error) {
	req, err := c.NewRequest(ctx, http.MethodPut, storepath.HashPart(storePath)+".narinfo", bytes.NewReader(text))
	if err != nil {
		return Reply{}, err
	}
	req.Header.Set("Content-Type", "text/x-nix-narinfo")
	return c.Do(req, 64<<10)
}
