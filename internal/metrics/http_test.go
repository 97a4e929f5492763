package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestProblemType(t *testing.T) {
	long := `{"type":"urn:ietf:params:acme:error:badNonce","detail":"` + strings.Repeat("x", 2000)
	for body, want := range map[string]string{
		`{"type":"urn:ietf:params:acme:error:badNonce","status":400}`: "badNonce",
		long[:maxProblemSniff]:                           "badNonce", // cut short after the type
		`{"title":"Not Found","status":404}`:             "about:blank",
		`{"status":400,"type":"urn:example:thing"}`:      "urn:example:thing",
		`{"type":"bad type\u0000"}`:                      "other",
		`not json`:                                       "unreadable",
		`{"detail":"` + strings.Repeat("y", 2000)[:1000]: "about:blank",
	} {
		if got := problemType([]byte(body)); got != want {
			t.Errorf("problemType(%.60q) = %q, want %q", body, got, want)
		}
	}
}

// TestInstrument checks the labels: the route pattern (never the raw path) and the
// problem type of an error response.
func TestInstrument(t *testing.T) {
	r := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /item/{id}", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("POST /item/{id}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"type":"urn:ietf:params:acme:error:badNonce"}`))
	})
	h := r.Instrument(mux)
	for _, req := range []*http.Request{
		httptest.NewRequest("GET", "/item/1", nil), httptest.NewRequest("GET", "/item/2", nil),
		httptest.NewRequest("POST", "/item/3", nil), httptest.NewRequest("GET", "/elsewhere", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	for series, want := range map[[2]string]float64{
		{"GET /item/{id}", "200"}:  2,
		{"POST /item/{id}", "400"}: 1,
		{"unmatched", "404"}:       1,
	} {
		if got := value(t, r.http.requests.WithLabelValues(series[0], series[1])); got != want {
			t.Errorf("requests %v = %v, want %v", series, got, want)
		}
	}
	if got := value(t, r.http.problems.WithLabelValues("badNonce")); got != 1 {
		t.Errorf("badNonce problems = %v, want 1", got)
	}
}

// countingCollector counts its readings.
type countingCollector struct {
	mu    sync.Mutex
	reads int
	gate  chan struct{}
}

var countDesc = prometheus.NewDesc("test_reads", "readings", nil, nil)

func (c *countingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- countDesc }

func (c *countingCollector) Collect(ch chan<- prometheus.Metric) {
	<-c.gate
	c.mu.Lock()
	c.reads++
	n := c.reads
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(countDesc, prometheus.GaugeValue, float64(n))
}

// TestShared: scrapes that wait for a reading in progress reuse it; a later scrape
// reads again.
func TestShared(t *testing.T) {
	c := &countingCollector{gate: make(chan struct{})}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Shared(c))
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); reg.Gather() }()
	}
	time.Sleep(50 * time.Millisecond) // let every scrape arrive
	close(c.gate)
	wg.Wait()
	if c.reads >= 5 {
		t.Errorf("5 concurrent scrapes read %d times: none shared a reading", c.reads)
	}
	before := c.reads
	reg.Gather()
	if c.reads != before+1 {
		t.Errorf("a later scrape did not read again")
	}
}
