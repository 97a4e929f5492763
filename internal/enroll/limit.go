package enroll

import (
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per client address, in memory: each address may make
// burst requests at once and rate per second after that. IPv6 clients are counted
// by /64, which one host usually has whole. The table holds at most maxClients
// addresses; past that, full buckets are dropped (they hold nothing a fresh one
// would not) and, if none is, new addresses share one bucket, so a flood from many
// addresses costs bounded memory and is limited all the same.
// maxLimitedClients bounds the limiter's table.
const maxLimitedClients = 10000

type limiter struct {
	rate, burst float64
	maxClients  int

	mu       sync.Mutex
	buckets  map[netip.Addr]*bucket
	overflow bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(perMinute, burst, maxClients int) *limiter {
	if perMinute <= 0 || burst <= 0 {
		return nil
	}
	return &limiter{rate: float64(perMinute) / 60, burst: float64(burst), maxClients: maxClients, buckets: map[netip.Addr]*bucket{}}
}

// clientKey is the address a request is counted under.
func clientKey(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// allow takes a token for the client at remote; when there is none it says how
// long until there is.
func (l *limiter) allow(remote string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	key := clientKey(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.maxClients {
			l.sweep(now)
		}
		if len(l.buckets) >= l.maxClients {
			b = &l.overflow
		} else {
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[key] = b
		}
	}
	b.refill(l, now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
	return false, wait
}

func (b *bucket) refill(l *limiter, now time.Time) {
	if b.at.IsZero() {
		b.tokens, b.at = l.burst, now
		return
	}
	if d := now.Sub(b.at); d > 0 {
		b.tokens = math.Min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.at = now
	}
}

// sweep drops the buckets that have refilled.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		b.refill(l, now)
		if b.tokens >= l.burst {
			delete(l.buckets, k)
		}
	}
}
