// Package metrics serves nixpki's Prometheus metrics: one private registry per
// server (never the global default), HTTP instrumentation by route pattern, the
// /metrics listener, and the gate's collector. Collectors read state when scraped
// (certificates, CRLs, database counts) rather than counting along every code path,
// so what the CLI changes in a shared database shows up too.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric.
const Namespace = "nixpki"

// Registry is one server's metrics.
type Registry struct {
	reg  *prometheus.Registry
	http *httpMetrics
}

// New makes a registry with the Go runtime and process collectors and
// nixpki_build_info.
func New() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help: "Always 1; the labels name the nixpki version and the Go version it was built with.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(Version(), runtime.Version()).Set(1)
	reg.MustRegister(info)
	r := &Registry{reg: reg, http: newHTTPMetrics()}
	reg.MustRegister(r.http)
	return r
}

// Version is the module version the binary was built from ("(devel)" for a
// source-tree build).
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// MustRegister adds collectors; a name registered twice is a programming error.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// Handler serves the registry in the Prometheus text format. A collector that fails
// (a database away) leaves its metrics out and the rest is still served.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg, ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4, Timeout: 30 * time.Second})
}

// Serve answers GET /metrics on addr until ctx ends. It returns once listening,
// with the bound address (addr may have port 0).
func (r *Registry) Serve(ctx context.Context, addr string, log *slog.Logger) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", r.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	return ln.Addr(), nil
}
