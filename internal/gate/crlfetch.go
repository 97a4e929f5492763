package gate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// A gate that can reach the CA fetches its CRLs itself, so a revocation quarantines
// within one crl_fetch_interval without anyone carrying a CRL. A fetch that fails
// changes nothing: the held CRL ages, and max_crl_age closes the gate when it is too
// old, so an unreachable CA never opens it.

// crlFetchTimeout bounds one fetch; a CRL is small and the CA is near.
const crlFetchTimeout = 30 * time.Second

// crlBackoffMax caps the wait after repeated failures of one URL.
const crlBackoffMax = time.Hour

// crlURLs returns the URLs to fetch: those configured, else the CRL distribution
// points of the member certificates the gate holds (the Nix intermediate's CRL).
func (g *Gate) crlURLs() []string {
	if len(g.Cfg.CRLURLs) > 0 {
		return g.Cfg.CRLURLs
	}
	g.trust.mu.RLock()
	defer g.trust.mu.RUnlock()
	var urls []string
	for _, cs := range g.trust.byKey {
		for _, c := range cs {
			for _, u := range c.CRLDistributionPoints {
				if !slices.Contains(urls, u) {
					urls = append(urls, u)
				}
			}
		}
	}
	slices.Sort(urls)
	return urls
}

// crlFetcher remembers, per URL, when to try next after failures.
type crlFetcher struct {
	g      *Gate
	client *http.Client
	fails  map[string]int
	next   map[string]time.Time
}

func (g *Gate) newCRLFetcher() *crlFetcher {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AddCert(g.trust.v.Root())
	return &crlFetcher{
		g: g,
		client: &http.Client{
			Timeout:   crlFetchTimeout,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
		},
		fails: map[string]int{},
		next:  map[string]time.Time{},
	}
}

// run fetches every interval until ctx ends.
func (f *crlFetcher) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f.round(ctx, interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round fetches each URL that is due and hands the CRL to the same path an upload
// takes; a CRL not newer than the one held changes nothing.
func (f *crlFetcher) round(ctx context.Context, interval time.Duration) {
	now := time.Now()
	for _, u := range f.g.crlURLs() {
		if now.Before(f.next[u]) {
			continue
		}
		msg, err := f.fetch(ctx, u)
		if err != nil {
			f.fails[u]++
			wait := min(interval<<min(f.fails[u], 10), crlBackoffMax)
			f.next[u] = now.Add(wait)
			f.g.Log.Warn("CRL fetch failed; the held CRL stays in force until max_crl_age", "url", u, "err", err, "retry_in", wait)
			continue
		}
		if f.fails[u] > 0 {
			f.g.Log.Info("CRL fetch works again", "url", u, "failures", f.fails[u])
		}
		delete(f.fails, u)
		delete(f.next, u)
		f.g.Log.Debug("CRL fetched", "url", u, "result", msg)
	}
}

func (f *crlFetcher) fetch(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLBody+1))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if len(body) > maxCRLBody {
		return "", fmt.Errorf("GET %s: larger than %d bytes", url, maxCRLBody)
	}
	return f.g.AddCRL(ctx, body, "fetch "+url)
}
