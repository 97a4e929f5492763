package monitor

import (
	"context"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	caNotAfterDesc = desc("ca_certificate_not_after_timestamp_seconds", "notAfter of the CA's certificates (root, tls and nix intermediates), Unix seconds.", "ca")
	crlNextDesc    = desc("crl_next_update_timestamp_seconds", "nextUpdate of the CRL the server publishes for an intermediate, Unix seconds.", "crl")
	crlNumberDesc  = desc("crl_number", "CRL number of the CRL the server publishes for an intermediate.", "crl")
	issuedDesc     = desc("certificates_issued_total", "Certificates issued, by path (acme, direct, nix) and profile (ACME profile, Nix enrollment method, or cli/server).", "path", "profile")
	revokedDesc    = desc("certificates_revoked_total", "Certificates revoked, by the path and profile they were issued by.", "path", "profile")
	ordersDesc     = desc("acme_orders", "ACME orders by provisioner, profile and status (pending, ready, processing, valid, invalid).", "provisioner", "profile", "status")
	challDesc      = desc("acme_challenges", "ACME challenges answered, by provisioner, type (http-01, dns-01, tls-alpn-01) and status (processing, valid, invalid).", "provisioner", "type", "status")
	nameDesc       = desc("name_newest_not_after_timestamp_seconds", "For each name issued for (ACME or direct) within monitor.window, the notAfter of its newest unrevoked certificate, Unix seconds.", "name")
	droppedDesc    = desc("name_dropped_names", "Names within monitor.window left out of nixpki_name_newest_not_after_timestamp_seconds beyond monitor.max_names (those expiring latest).")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("nixpki_"+name, help, labels, nil)
}

// Collector reports the CA's state, read from its certificates and database at
// each scrape.
func (c *CA) Collector() prometheus.Collector { return collector{c} }

type collector struct{ ca *CA }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{caNotAfterDesc, crlNextDesc, crlNumberDesc, issuedDesc, revokedDesc, ordersDesc, challDesc, nameDesc, droppedDesc} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	c := k.ca
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for name, cert := range c.Certs {
		gauge(caNotAfterDesc, float64(cert.NotAfter.Unix()), name)
	}
	for _, iss := range CRLIssuers {
		st, err := c.DB.GetCRL(ctx, iss)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(crlNextDesc, err)
			break
		}
		if st.DER == nil {
			continue // none built yet: the first fetch builds it
		}
		gauge(crlNextDesc, float64(st.NextUpdate.Unix()), iss)
		gauge(crlNumberDesc, float64(st.Number), iss)
	}
	if counts, err := c.DB.IssuanceCounts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(issuedDesc, err)
	} else {
		type key struct{ path, profile string }
		issued, revoked := map[key]int64{}, map[key]int64{}
		for _, n := range counts {
			p, prof := Path(n.Issuer, n.Method, n.Profile)
			issued[key{p, prof}] += n.Issued
			revoked[key{p, prof}] += n.Revoked
		}
		for k, n := range issued {
			ch <- prometheus.MustNewConstMetric(issuedDesc, prometheus.CounterValue, float64(n), k.path, k.profile)
			ch <- prometheus.MustNewConstMetric(revokedDesc, prometheus.CounterValue, float64(revoked[k]), k.path, k.profile)
		}
	}
	if counts, err := c.DB.ACMECounts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(ordersDesc, err)
	} else {
		for _, n := range counts {
			d := ordersDesc
			if n.Kind == "challenge" {
				d = challDesc
			}
			gauge(d, float64(n.N), n.Provisioner, n.Type, n.Status)
		}
	}
	names, dropped, err := c.Names(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(nameDesc, err)
		return
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Name < names[j].Name })
	for _, n := range names {
		gauge(nameDesc, float64(n.NotAfter.Unix()), n.Name)
	}
	gauge(droppedDesc, float64(dropped))
}
