package binarycache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/storepath"
)

const (
	dir      = storepath.DefaultStoreDir
	curlPath = dir + "/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin"
	otherRef = "0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0"
)

var narHash = sha256.Sum256([]byte("nar"))

// goodNarInfo is the narinfo of curlPath, as a cache serves it.
func goodNarInfo(t *testing.T, storePath string) []byte {
	t.Helper()
	ni := &narinfo.NarInfo{StorePath: storePath, URL: NARURL(narHash, "zstd"), Compression: "zstd",
		NarHash: narHash, NarSize: 3, References: []string{otherRef}}
	text, err := ni.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// cache is a binary cache over HTTP on 127.0.0.1 serving files; "fail N" in
// place of a file answers 500 N times, then 404.
type cache struct {
	mu    sync.Mutex
	files map[string][]byte
	fails map[string]int
	gets  atomic.Int32
	puts  []*http.Request
	body  map[string][]byte
	srv   *httptest.Server
}

func newCache(t *testing.T) *cache {
	c := &cache{files: map[string][]byte{"nix-cache-info": []byte("StoreDir: /nix/store\nWantMassQuery: 1\n")}, fails: map[string]int{}, body: map[string][]byte{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		name := strings.TrimPrefix(r.URL.Path, "/")
		switch r.Method {
		case http.MethodGet:
			c.gets.Add(1)
			if c.fails[name] > 0 {
				c.fails[name]--
				http.Error(w, "try again", http.StatusInternalServerError)
				return
			}
			if name == "secret" {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
			b, ok := c.files[name]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Write(b)
		case http.MethodPut:
			c.puts = append(c.puts, r)
			if strings.HasSuffix(name, ".nar.zst") && r.Header.Get(NARNameHeader) == "" {
				http.Error(w, "refused without reading the body", http.StatusBadRequest)
				return
			}
			b, _ := io.ReadAll(r.Body)
			c.body[name] = b
			io.WriteString(w, "stored "+name+"\n")
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *cache) client(t *testing.T) *Client {
	t.Helper()
	cl, err := New(c.srv.URL+"/?compression=zstd", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestNewRefuses(t *testing.T) {
	for _, u := range []string{"s3://bucket", "file://elsewhere/cache", "http://", "ssh://host", "http://[::1"} {
		if _, err := New(u, nil); err == nil || !strings.Contains(err.Error(), "binary cache URL") {
			t.Errorf("New(%q): %v", u, err)
		}
	}
}

func TestNarInfo(t *testing.T) {
	c := newCache(t)
	cl := c.client(t)
	ctx := context.Background()
	hash := storepath.HashPart(curlPath)

	if info, err := cl.CacheInfo(ctx); err != nil || info.StoreDir != dir {
		t.Fatalf("CacheInfo: %+v, %v", info, err)
	}

	c.files[hash+".narinfo"] = goodNarInfo(t, curlPath)
	pi, err := cl.Info(ctx, dir, curlPath)
	if err != nil {
		t.Fatal(err)
	}
	if pi.Path != curlPath || pi.NarHash != narHash || pi.References[0] != dir+"/"+otherRef || pi.URL != NARURL(narHash, "zstd") || pi.Compression != "zstd" {
		t.Fatalf("Info: %+v", pi)
	}

	t.Run("404", func(t *testing.T) {
		missing := dir + "/00000000000000000000000000000000-missing"
		_, err := cl.NarInfo(ctx, dir, missing)
		var se *StatusError
		if !errors.Is(err, ErrAbsent) || !errors.As(err, &se) || se.Status != 404 {
			t.Fatalf("NarInfo of a missing path: %v", err)
		}
		if _, err := cl.Info(ctx, dir, missing); !errors.Is(err, pathinfo.ErrNotValid) || !strings.Contains(err.Error(), "path '"+missing+"' is not valid in http://127.0.0.1") {
			t.Fatalf("Info of a missing path: %v", err)
		}
	})

	t.Run("oversized", func(t *testing.T) {
		big := append(goodNarInfo(t, curlPath), "Sig: "+strings.Repeat("x", narinfo.MaxSize)+"\n"...)
		c.files[hash+".narinfo"] = big
		if _, err := cl.NarInfo(ctx, dir, curlPath); err == nil || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), curlPath) {
			t.Fatalf("a narinfo of %d bytes: %v", len(big), err)
		}
	})

	t.Run("bad", func(t *testing.T) {
		for text, want := range map[string]string{
			"StorePath: " + curlPath + "\nURL: nar/x.nar\n":       "NarHash",
			"this is not a narinfo":                               "narinfo",
			string(goodNarInfo(t, dir+"/"+otherRef)):              "describes '" + dir + "/" + otherRef + "'",
			string(goodNarInfo(t, curlPath)) + "NarSize: 4\n":     "NarSize",
			string(goodNarInfo(t, curlPath)) + "References: ..\n": "References",
		} {
			c.files[hash+".narinfo"] = []byte(text)
			if _, err := cl.NarInfo(ctx, dir, curlPath); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("narinfo %.60q: %v, want an error naming %q", text, err, want)
			}
		}
		if _, err := cl.NarInfo(ctx, dir, "/nix/store/short"); err == nil {
			t.Error("a malformed store path was asked for")
		}
	})

	t.Run("retried", func(t *testing.T) {
		c.files[hash+".narinfo"] = goodNarInfo(t, curlPath)
		c.fails[hash+".narinfo"] = 2
		before := c.gets.Load()
		if _, err := cl.NarInfo(ctx, dir, curlPath); err != nil {
			t.Fatalf("after two failures: %v", err)
		}
		c.fails[hash+".narinfo"] = 3
		_, err := cl.NarInfo(ctx, dir, curlPath)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 500 || errors.Is(err, ErrAbsent) || !strings.Contains(se.Body, "try again") {
			t.Fatalf("after three failures: %v", err)
		}
		if n := c.gets.Load() - before; n != 6 {
			t.Fatalf("%d GETs for two fetches, want 3 + 3", n)
		}
	})
}

func TestRefusesUnsafeNames(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "secret"), []byte("x"), 0o644)
	sub := filepath.Join(d, "cache")
	os.Mkdir(sub, 0o755)
	fileCache, err := New("file://"+sub, nil)
	if err != nil {
		t.Fatal(err)
	}
	httpCache := newCache(t).client(t)
	for _, cl := range []*Client{fileCache, httpCache} {
		for _, rel := range []string{"../secret", "/etc/passwd", "nar/../../secret", "http://elsewhere/x", "", "..", "nar//x"} {
			if _, err := cl.Get(context.Background(), rel); err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("%s: Get(%q): %v", cl, rel, err)
			}
		}
	}
	if _, err := fileCache.Get(context.Background(), "nix-cache-info"); !errors.Is(err, ErrAbsent) {
		t.Errorf("a missing file of a file:// cache: %v", err)
	}
	if _, err := httpCache.Get(context.Background(), "secret"); !errors.Is(err, ErrAbsent) {
		t.Errorf("403: %v", err)
	}
	if _, err := fileCache.PutNarInfo(context.Background(), curlPath, nil); err == nil {
		t.Error("an upload to a file:// cache")
	}
}

func TestCacheInfoBounds(t *testing.T) {
	d := t.TempDir()
	cl, err := New("file://"+d+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]string{
		"StoreDir: /gnu/store\n":                                         "",
		"WantMassQuery: 1\n":                                             "",
		"StoreDir: nix/store\n":                                          "absolute",
		strings.Repeat("#", MaxCacheInfoSize+1):                          "larger than 65536 bytes",
		"StoreDir: /nix/store\n" + strings.Repeat("Priority: 1\n", 6000): "larger than",
	} {
		os.WriteFile(filepath.Join(d, "nix-cache-info"), []byte(text), 0o644)
		info, err := cl.CacheInfo(context.Background())
		switch {
		case want == "" && err != nil:
			t.Errorf("%.40q: %v", text, err)
		case want == "" && text == "WantMassQuery: 1\n" && info.StoreDir != dir:
			t.Errorf("default StoreDir %q", info.StoreDir)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%.40q: %v, want an error naming %q", text, err, want)
		}
	}
}

func TestNAR(t *testing.T) {
	c := newCache(t)
	cl := c.client(t)
	ctx := context.Background()
	u := NARURL(narHash, "zstd")
	c.files[u] = []byte("0123456789")

	rc, err := cl.NAR(ctx, u, 10)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(rc); err != nil || string(b) != "0123456789" {
		t.Fatalf("NAR: %q, %v", b, err)
	}
	rc.Close()

	rc, _ = cl.NAR(ctx, u, 4) // the narinfo says 4 bytes
	b, err := io.ReadAll(rc)
	rc.Close()
	var be *BodyError
	if err == nil || !strings.Contains(err.Error(), "larger than the 4 bytes") || errors.As(err, &be) || len(b) != 4 {
		t.Fatalf("a NAR file longer than FileSize: %q, %v", b, err)
	}

	if _, err := cl.NAR(ctx, NARURL(sha256.Sum256(nil), "xz"), 0); !errors.Is(err, ErrAbsent) {
		t.Fatalf("a missing NAR: %v", err)
	}

	// A connection that breaks in the middle of the file is a BodyError: the
	// cache could not be read, which says nothing of the file.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write([]byte("short"))
	}))
	defer cut.Close()
	cc, _ := New(cut.URL, nil)
	rc, err = cc.NAR(ctx, u, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.As(err, &be) {
		t.Fatalf("a cut connection: %T %v", err, err)
	}
}

// closeCounter is an upload body that records that it was closed.
type closeCounter struct {
	io.Reader
	once sync.Once
	done chan struct{}
}

func newBody(s string) *closeCounter {
	return &closeCounter{Reader: strings.NewReader(s), done: make(chan struct{})}
}

func (c *closeCounter) Close() error { c.once.Do(func() { close(c.done) }); return nil }

// closed says whether the body was closed within a few seconds (the transport
// may close it after Do returns).
func (c *closeCounter) closed() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func TestUploads(t *testing.T) {
	c := newCache(t)
	cl := c.client(t)
	ctx := context.Background()
	u := NARURL(narHash, "zstd")

	body := newBody("compressed NAR")
	r, err := cl.PutNAR(ctx, u, body, -1, true)
	if err != nil || !r.OK() || r.Body != "stored "+u+"\n" || !body.closed() {
		t.Fatalf("PutNAR: %+v, %v, closed %v", r, err, body.closed())
	}
	req := c.puts[len(c.puts)-1]
	if req.Header.Get(NARNameHeader) != NARNameNarHash || req.Header.Get("Content-Type") != "application/x-nix-nar" || !bytes.Equal(c.body[u], []byte("compressed NAR")) {
		t.Fatalf("the cache got %v, %q", req.Header, c.body[u])
	}

	// Named by the file's hash (no header), this cache answers before reading.
	body = newBody("compressed NAR")
	r, err = cl.PutNAR(ctx, u, body, 14, false)
	if err != nil || r.Status != 400 || !strings.Contains(r.Body, "refused") || !body.closed() {
		t.Fatalf("PutNAR refused: %+v, %v, closed %v", r, err, body.closed())
	}

	body = newBody("x")
	if _, err := cl.PutNAR(ctx, "../nar/x.nar", body, 1, true); err == nil || !body.closed() {
		t.Fatalf("an unsafe NAR name: %v, closed %v", err, body.closed())
	}

	text := goodNarInfo(t, curlPath)
	r, err = cl.PutNarInfo(ctx, curlPath, text)
	name := storepath.HashPart(curlPath) + ".narinfo"
	if err != nil || !r.OK() || !bytes.Equal(c.body[name], text) || c.puts[len(c.puts)-1].Header.Get("Content-Type") != "text/x-nix-narinfo" {
		t.Fatalf("PutNarInfo: %+v, %v; the cache got %q", r, err, c.body[name])
	}

	// Do reads at most max bytes of an answer.
	c.files["big"] = bytes.Repeat([]byte("y"), 100)
	req, err = cl.NewRequest(ctx, http.MethodGet, "big", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := cl.Do(req, 10); err != nil || r.Status != 200 || len(r.Body) != 10 {
		t.Fatalf("Do: %+v, %v", r, err)
	}
}

// TestNARURL: the names round-trip and a wrong extension says which ones a
// gate takes.
func TestNARURL(t *testing.T) {
	for _, comp := range []string{"none", "xz", "zstd", "bzip2"} {
		u := NARURL(narHash, comp)
		h, c, err := ParseNARURL(u)
		if err != nil || h != narHash || c != comp {
			t.Errorf("%s: %s → %x %s %v", comp, u, h, c, err)
		}
	}
	if NARURL(narHash, "br") != "" {
		t.Error("a NAR URL for brotli")
	}
	if _, _, err := ParseNARURL(strings.TrimSuffix(NARURL(narHash, "xz"), ".xz") + ".lz4"); err == nil || !strings.Contains(err.Error(), ".nar.zst") {
		t.Errorf(".lz4: %v", err)
	}
}
