// Package binarycache is a client of Nix binary caches, over http(s):// or
// file://: nix-cache-info, narinfos and NAR files as Nix lays them out, read
// with bounds; and, over HTTP, NAR and narinfo uploads as nixpki's gate takes
// them. nixpki verify reads caches with it; nixpki nix push uploads with it.
package binarycache

import (
	"context"
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
)

// ErrAbsent is a cache's "no such file": HTTP 404 or 403, as Nix reads them, or
// a missing file of a file:// cache.
var ErrAbsent = errors.New("not in the cache")

// StatusError is an HTTP answer other than 200 OK to a read.
type StatusError struct {
	Method, URL string // the URL without credentials
	Status      int
	StatusText  string // "404 Not Found"
	Body        string // the start of the answer's body
}

func (e *StatusError) Error() string { return e.Method + " " + e.URL + ": " + e.StatusText }

// Is makes a 404 or 403 answer an ErrAbsent.
func (e *StatusError) Is(target error) bool {
	return target == ErrAbsent && (e.Status == http.StatusNotFound || e.Status == http.StatusForbidden)
}

// BodyError is a failure to read a file of the cache once it was opened (the
// connection broke, the disk failed): the cache could not be read, which says
// nothing about the file's bytes.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// Client talks to one binary cache.
type Client struct {
	base *url.URL
	dir  string // for file:// caches
	http *http.Client
}

// New returns a client of the cache at rawURL: http://, https:// or file://.
// Nix's store parameters (?compression=…) do not matter to a client and are
// dropped. hc may be nil for a default client.
func New(rawURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("binary cache URL %q: %w", rawURL, err)
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, http: hc}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("binary cache URL %q: a file:// URL must not name a host", rawURL)
		}
		c.dir = filepath.FromSlash(u.Path)
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("binary cache URL %q: no host", rawURL)
		}
		if c.http == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = 32
			t.ResponseHeaderTimeout = time.Minute
			c.http = &http.Client{Transport: t} // no overall timeout: NARs may be large
		}
	default:
		return nil, fmt.Errorf("binary cache URL %q: unsupported scheme %q (want http, https or file)", rawURL, u.Scheme)
	}
	return c, nil
}

// String is the cache's URL.
func (c *Client) String() string { return c.base.String() }

// HTTPClient is the client the cache is asked with; nil for a file:// cache.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Close releases idle connections.
func (c *Client) Close() error {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
	return nil
}

// checkRel refuses a file name that is not a plain path inside the cache: the
// names come from narinfos, which the cache wrote.
func checkRel(rel string) error {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.Contains(rel, "://") || path.Clean(rel) != rel || strings.HasPrefix(rel, "../") || rel == ".." {
		return fmt.Errorf("refusing file name %q: not a plain path inside the cache", rel)
	}
	return nil
}

// NewRequest is an HTTP request for the file rel of the cache (relative to its
// root).
func (c *Client) NewRequest(ctx context.Context, method, rel string, body io.Reader) (*http.Request, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	if c.http == nil {
		return nil, fmt.Errorf("%s %s: %s is not an HTTP cache", method, rel, c)
	}
	u := *c.base
	u.Path += "/" + rel
	return http.NewRequestWithContext(ctx, method, u.String(), body)
}

// Reply is an HTTP answer to an upload or a query: its status and the start of
// its body.
type Reply struct {
	Status int
	Body   string
}

// OK says whether the answer is a 2xx.
func (r Reply) OK() bool { return r.Status/100 == 2 }

// Do sends req and reads at most max bytes of the answer's body; a longer body
// is cut (and drained, up to a bound, so that the connection can be reused).
func (c *Client) Do(req *http.Request, max int64) (Reply, error) {
	res, err := c.http.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, max))
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	return Reply{Status: res.StatusCode, Body: string(b)}, err
}

// Get opens the file rel of the cache. A missing file is an error wrapping
// ErrAbsent; any other HTTP answer than 200 is a *StatusError; errors reading
// the file once opened are *BodyError.
func (c *Client) Get(ctx context.Context, rel string) (io.ReadCloser, error) {
	if err := checkRel(rel); err != nil {
		return nil, err
	}
	if c.dir != "" {
		f, err := os.Open(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", rel, ErrAbsent)
		}
		if err != nil {
			return nil, err
		}
		return bodyReader{f}, nil
	}
	req, err := c.NewRequest(ctx, http.MethodGet, rel, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, &StatusError{Method: http.MethodGet, URL: req.URL.Redacted(), Status: resp.StatusCode, StatusText: resp.Status, Body: string(b)}
	}
	return bodyReader{resp.Body}, nil
}

// bodyReader marks the errors of reading an opened file as *BodyError.
type bodyReader struct{ io.ReadCloser }

func (b bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &BodyError{Err: err}
	}
	return n, err
}
