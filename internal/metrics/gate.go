package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GateStats is a gate's state as a scrape reads it.
type GateStats struct {
	// Paths counts store paths by state: admitted, pending, quarantined.
	Paths map[string]int
	// RejectedPaths counts paths whose last upload was rejected.
	RejectedPaths int
	// LogEntries is the size of the gate's log.
	LogEntries uint64
	// MaxCRLAge is the gate's max_crl_age (0: any age).
	MaxCRLAge time.Duration
	CRLs      []GateCRL
}

// GateCRL is one CRL the gate holds.
type GateCRL struct {
	Issuer     string // the issuer's common name
	ThisUpdate time.Time
	// Gating: signatures under this issuer count only while its CRL is younger than
	// MaxCRLAge (the intermediates' CRLs; not the root's).
	Gating bool
}

// GateCollector reports a gate's state, read by stats at each scrape.
func GateCollector(stats func(context.Context) (*GateStats, error), now func() time.Time) prometheus.Collector {
	return &gateCollector{stats: stats, now: now}
}

type gateCollector struct {
	stats func(context.Context) (*GateStats, error)
	now   func() time.Time
}

var (
	gatePathsDesc    = desc("gate_paths", "Store paths held by the gate, by state (admitted, pending, quarantined).", "state")
	gateRejectedDesc = desc("gate_rejected_paths", "Store paths whose last upload the gate rejected.")
	gateLogDesc      = desc("gate_log_entries", "Entries in the gate's tamper-evident log.")
	gateMaxAgeDesc   = desc("gate_max_crl_age_seconds", "The gate's max_crl_age: older CRLs make it fail closed (0: any age).")
	gateCRLAgeDesc   = desc("gate_crl_age_seconds", "Age of the newest CRL the gate holds for an issuer (now - thisUpdate).", "issuer")
	gateCRLLeftDesc  = desc("gate_crl_fail_closed_in_seconds", "Time until the CRL held for an intermediate passes max_crl_age and the gate stops counting its signatures (negative: already).", "issuer")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

func (c *gateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gatePathsDesc, gateRejectedDesc, gateLogDesc, gateMaxAgeDesc, gateCRLAgeDesc, gateCRLLeftDesc} {
		ch <- d
	}
}

func (c *gateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(gatePathsDesc, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range []string{"admitted", "pending", "quarantined"} {
		gauge(gatePathsDesc, float64(st.Paths[s]), s)
	}
	gauge(gateRejectedDesc, float64(st.RejectedPaths))
	gauge(gateLogDesc, float64(st.LogEntries))
	gauge(gateMaxAgeDesc, st.MaxCRLAge.Seconds())
	now := c.now()
	for _, crl := range st.CRLs {
		gauge(gateCRLAgeDesc, now.Sub(crl.ThisUpdate).Seconds(), crl.Issuer)
		if crl.Gating && st.MaxCRLAge > 0 {
			gauge(gateCRLLeftDesc, crl.ThisUpdate.Add(st.MaxCRLAge).Sub(now).Seconds(), crl.Issuer)
		}
	}
}

// GateVerdicts counts the gate's verdicts on uploaded narinfos.
type GateVerdicts struct{ c *prometheus.CounterVec }

// GateVerdicts registers nixpki_gate_verdicts_total and returns its recorder.
func (r *Registry) GateVerdicts() *GateVerdicts {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "gate", Name: "verdicts_total",
		Help: "Verdicts on uploaded narinfos: admitted, pending or rejected, with the rejection's reason class.",
	}, []string{"verdict", "reason"})
	r.reg.MustRegister(c)
	return &GateVerdicts{c: c}
}

// Verdict counts one verdict; reason is a short class (empty unless rejected).
func (v *GateVerdicts) Verdict(verdict, reason string) { v.c.WithLabelValues(verdict, reason).Inc() }
