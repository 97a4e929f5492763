package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"nixpki/internal/gate"
	"nixpki/internal/metrics"
)

const metricsListenHelp = "serve Prometheus metrics at http://ADDR/metrics (off unless set; e.g. 127.0.0.1:9850)"

// startMetrics serves /metrics on addr with the given collectors and returns the
// wrapper that instruments the server's handlers; with addr empty it does nothing.
func startMetrics(ctx context.Context, addr string, log *slog.Logger, cs ...prometheus.Collector) (*metrics.Registry, func(http.Handler) http.Handler, error) {
	if addr == "" {
		return nil, nil, nil
	}
	reg := metrics.New()
	reg.MustRegister(cs...)
	if _, err := reg.Serve(ctx, addr, log); err != nil {
		return nil, nil, err
	}
	return reg, reg.Instrument, nil
}

// gateStats adapts the gate's state to its collector.
func gateStats(g *gate.Gate) func(context.Context) (*metrics.GateStats, error) {
	return func(ctx context.Context) (*metrics.GateStats, error) {
		st, err := g.Stats(ctx)
		if err != nil {
			return nil, err
		}
		out := &metrics.GateStats{Paths: st.Paths, RejectedPaths: st.RejectedPaths, LogEntries: st.LogEntries, MaxCRLAge: st.MaxCRLAge}
		for _, c := range st.CRLs {
			out.CRLs = append(out.CRLs, metrics.GateCRL{Issuer: c.Issuer, ThisUpdate: c.ThisUpdate, Gating: c.Gating})
		}
		return out, nil
	}
}

// startGateMetrics serves the gate's metrics on addr (if set) and counts its verdicts.
func startGateMetrics(ctx context.Context, addr string, g *gate.Gate, log *slog.Logger) (func(http.Handler) http.Handler, error) {
	reg, wrap, err := startMetrics(ctx, addr, log, metrics.Shared(metrics.GateCollector(gateStats(g), time.Now)))
	if reg != nil {
		g.OnVerdict = reg.GateVerdicts().Verdict
	}
	return wrap, err
}
