package metrics

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the request metrics of every instrumented handler, labelled by the
// route pattern that served the request (never the raw path: bounded label values).
type httpMetrics struct {
	duration *prometheus.HistogramVec
	requests *prometheus.CounterVec
	problems *prometheus.CounterVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to answer a request, by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "requests_total",
			Help: "Requests answered, by route pattern and status code.",
		}, []string{"endpoint", "code"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "http", Name: "problems_total",
			Help: "Problem documents (RFC 7807) returned, by type; ACME types by their short name (badNonce, malformed, ...).",
		}, []string{"type"}),
	}
}

func (m *httpMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.duration.Describe(ch)
	m.requests.Describe(ch)
	m.problems.Describe(ch)
}

func (m *httpMetrics) Collect(ch chan<- prometheus.Metric) {
	m.duration.Collect(ch)
	m.requests.Collect(ch)
	m.problems.Collect(ch)
}

// Instrument wraps a handler whose routing is a ServeMux (or muxes nested under it):
// after it answers, the request's Pattern names the route that served it.
func (r *Registry) Instrument(h http.Handler) http.Handler {
	m := r.http
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		rw := &recorder{ResponseWriter: w}
		h.ServeHTTP(rw, req)
		endpoint := req.Pattern
		if endpoint == "" {
			endpoint = "unmatched"
		}
		if rw.status == 0 {
			rw.status = http.StatusOK
		}
		m.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
		m.requests.WithLabelValues(endpoint, strconv.Itoa(rw.status)).Inc()
		if rw.problem != nil {
			m.problems.WithLabelValues(problemType(rw.problem.Bytes())).Inc()
		}
	})
}

// maxProblemSniff bounds what is kept of a problem body to read its type, which
// encoders write first.
const maxProblemSniff = 1 << 10

// recorder notes the status of a response and the start of a problem body.
type recorder struct {
	http.ResponseWriter
	status  int
	problem *bytes.Buffer
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
		if strings.HasPrefix(rw.Header().Get("Content-Type"), "application/problem+json") {
			rw.problem = &bytes.Buffer{}
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.problem != nil && rw.problem.Len() < maxProblemSniff {
		rw.problem.Write(b[:min(len(b), maxProblemSniff-rw.problem.Len())])
	}
	return rw.ResponseWriter.Write(b)
}

// Flush and Unwrap keep streaming responses and http.ResponseController working.
func (rw *recorder) Flush() {
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

const acmeErrorNS = "urn:ietf:params:acme:error:"

// problemType reads the "type" member of a (possibly cut short) problem document as a
// label value: ACME types by their short name, untyped problems as about:blank.
func problemType(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "unreadable"
	}
	typ := ""
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return "unreadable"
		}
		if k == "type" {
			v, _ := dec.Token()
			typ, _ = v.(string)
			break
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			break // cut short before a type: an untyped problem has none
		}
	}
	typ = strings.TrimPrefix(typ, acmeErrorNS)
	switch {
	case typ == "":
		return "about:blank"
	case len(typ) > 64 || strings.ContainsFunc(typ, func(r rune) bool { return r < '!' || r > '~' }):
		return "other"
	}
	return typ
}
