package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Shared makes concurrent scrapes share one reading of c: a scrape that arrives while
// another reads the database waits for that reading and reuses it, so a flood of
// scrapes costs one reading at a time. c's metrics must be constant
// (prometheus.MustNewConstMetric), as scrape-time collectors' are.
func Shared(c prometheus.Collector) prometheus.Collector {
	return &shared{c: c}
}

type shared struct {
	c  prometheus.Collector
	mu sync.Mutex
	at time.Time // when the reading in ms ended
	ms []prometheus.Metric
}

func (k *shared) Describe(ch chan<- *prometheus.Desc) { k.c.Describe(ch) }

func (k *shared) Collect(ch chan<- prometheus.Metric) {
	asked := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.at.Before(asked) { // no reading ended since this scrape came
		inner := make(chan prometheus.Metric)
		go func() {
			k.c.Collect(inner)
			close(inner)
		}()
		k.ms = k.ms[:0]
		for m := range inner {
			k.ms = append(k.ms, m)
		}
		k.at = time.Now()
	}
	for _, m := range k.ms {
		ch <- m
	}
}
