package acme

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"

	"nixpki/internal/store"
)

// Nonces are stateless and sealed: 8 bytes of issue time (Unix milliseconds: whole
// seconds would cut up to a second off a short lifetime) and 8 random bytes, with a
// truncated HMAC-SHA256 under a key every server sharing the database reads from it.
// Any replica can check any nonce; a nonce is spent by recording it in the database
// as soon as the request's signature verifies, before anything else is checked, in a
// group commit shared by the requests waiting at that moment.
const (
	nonceRaw    = 16
	nonceMACLen = 16
	nonceLen    = nonceRaw + nonceMACLen
)

type nonces struct {
	key []byte
	now func() time.Time
	// maxLife bounds every provisioner's lifetime: spent records are kept this long.
	maxLife time.Duration
}

func (n *nonces) mac(raw []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(raw)
	return m.Sum(nil)[:nonceMACLen]
}

// make returns a fresh nonce.
func (n *nonces) make() string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(n.now().UnixMilli()))
	rand.Read(b[8:nonceRaw])
	copy(b[nonceRaw:], n.mac(b[:nonceRaw]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// check verifies a nonce's seal and age; the caller spends it.
func (n *nonces) check(s string, life time.Duration) (*store.Nonce, error) {
	if s == "" {
		return nil, badNonce("the JWS protected header has no nonce: get one from newNonce")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != nonceLen || !hmac.Equal(n.mac(b[:nonceRaw]), b[nonceRaw:]) {
		return nil, badNonce("the nonce was not issued by this server")
	}
	issued := nonceIssued(binary.BigEndian.Uint64(b[:8]))
	now := n.now()
	if now.Sub(issued) > life || issued.After(now.Add(time.Minute)) {
		return nil, badNonce("the nonce has expired: get a fresh one")
	}
	return &store.Nonce{Value: s, Expires: issued.Add(n.maxLife + time.Minute)}, nil
}

// nonceIssued reads a nonce's issue time: Unix milliseconds, or, below 10^11 (which
// in milliseconds is 1973), Unix seconds, as servers before milliseconds wrote them:
// replicas upgraded one at a time accept each other's nonces (an older replica still
// refuses the newer ones; clients retry on badNonce with the fresh nonce it sends).
func nonceIssued(v uint64) time.Time {
	if v < 1e11 {
		return time.Unix(int64(v), 0)
	}
	return time.UnixMilli(int64(v))
}

// spender group-commits the nonces of verified requests.
type spender struct {
	db   Store
	log  *slog.Logger
	now  func() time.Time
	reqs chan spendReq
	stop chan struct{}
	done sync.WaitGroup
}

type spendReq struct {
	n    store.Nonce
	errc chan error
}

const (
	spendBatch    = 256
	purgeInterval = time.Minute
)

func newSpender(db Store, log *slog.Logger, now func() time.Time) *spender {
	s := &spender{db: db, log: log, now: now, reqs: make(chan spendReq, spendBatch), stop: make(chan struct{})}
	s.done.Add(1)
	go s.loop()
	return s
}

// spend records n, waiting for the commit; it fails with store.ErrNonceReused or
// store.ErrAccountChanged.
func (s *spender) spend(ctx context.Context, n *store.Nonce) error {
	r := spendReq{n: *n, errc: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.stop:
		return errors.New("server stopping")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *spender) loop() {
	defer s.done.Done()
	lastPurge := s.now()
	batch := make([]spendReq, 0, spendBatch)
	ns := make([]store.Nonce, 0, spendBatch)
	for {
		batch, ns = batch[:0], ns[:0]
		select {
		case <-s.stop:
			return
		case r := <-s.reqs:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < spendBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		for _, r := range batch {
			ns = append(ns, r.n)
		}
		var purge time.Time
		if now := s.now(); now.Sub(lastPurge) > purgeInterval {
			purge, lastPurge = now, now
		}
		res, err := s.db.SpendNonces(context.Background(), ns, purge)
		for i, r := range batch {
			if err != nil {
				r.errc <- err
			} else {
				r.errc <- res[i]
			}
		}
	}
}

func (s *spender) close() {
	close(s.stop)
	s.done.Wait()
}
