//go:build linux

package verify

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime"
	"sync"

	"nixpki/internal/nix/nar"
	"nixpki/internal/sha256x16"
)

// Multi-path NAR hashing: one driver goroutine per core hashes the NARs of up
// to sixteen paths at once (hashRound, lanes.go). Each path's walk
// (nar.DumpPath) is a coroutine (iter.Pull) that writes its NAR into its lane's
// buffer and yields when the buffer is full. A driver takes up to sixteen walks
// from a pool shared by all drivers, runs each to its next full block or its
// end, hashes the full blocks in one round, finishes the streams that ended and
// puts the others back. Walks move between drivers from round to round, so
// that a run's last paths are shared out among the cores, not left to whichever
// driver started them. Hashing runs on the driver's goroutine, so a buffer is
// free again as soon as its round returns.

// mbBlock is how many NAR bytes a lane hashes per round: sixteen of them stay in
// the L2 cache between the read and the hash.
const mbBlock = 32 << 10

type mbJob struct {
	fsPath string
	sum    [32]byte
	size   uint64
	err    error
	done   chan struct{}
}

// mbPool is what the drivers share: new paths, the walks waiting for their
// next round, and lanes without a walk (their buffers reused).
type mbPool struct {
	jobs    chan *mbJob
	drivers int

	mu     sync.Mutex
	ready  []*mbLane
	spare  []*mbLane
	active int           // walks started and not finished
	wake   chan struct{} // a walk was put back
}

var mbQueue = sync.OnceValue(func() *mbPool {
	p := &mbPool{jobs: make(chan *mbJob), drivers: runtime.GOMAXPROCS(0), wake: make(chan struct{}, 1)}
	for range p.drivers {
		go p.drive() // idle drivers wait and cost nothing
	}
	return p
})

// mbHashPath is hashPath through the multi-path drivers.
func mbHashPath(fsPath string) ([32]byte, uint64, error) {
	j := &mbJob{fsPath: fsPath, done: make(chan struct{})}
	mbQueue().jobs <- j
	<-j.done
	return j.sum, j.size, j.err
}

// take fills mine with the walks of the driver's next round: its share of the
// walks in flight, at most sixteen, and new paths while the pool has room. It
// waits while there is nothing to do.
func (p *mbPool) take(mine []*mbLane) []*mbLane {
	for {
		p.mu.Lock()
		share := min(lanes, (p.active+p.drivers-1)/p.drivers)
		for len(mine) < share && len(p.ready) > 0 {
			mine = append(mine, p.ready[len(p.ready)-1])
			p.ready = p.ready[:len(p.ready)-1]
		}
		// New paths while fewer than sixteen walks per driver are in flight.
		for len(mine) < lanes && p.active < lanes*p.drivers {
			var j *mbJob
			select {
			case j = <-p.jobs:
			default:
			}
			if j == nil {
				break
			}
			mine = append(mine, p.startLocked(j))
		}
		p.mu.Unlock()
		if len(mine) > 0 {
			return mine
		}
		select {
		case j := <-p.jobs:
			p.mu.Lock()
			mine = append(mine, p.startLocked(j))
			p.mu.Unlock()
			return mine
		case <-p.wake:
		}
	}
}

func (p *mbPool) startLocked(j *mbJob) *mbLane {
	var l *mbLane
	if n := len(p.spare); n > 0 {
		l, p.spare = p.spare[n-1], p.spare[:n-1]
	} else {
		l = &mbLane{buf: make([]byte, mbBlock)}
	}
	p.active++
	l.start(j)
	return l
}

// put returns walks that go on to the pool and lanes whose walk ended.
func (p *mbPool) put(going, ended []*mbLane) {
	p.mu.Lock()
	p.ready = append(p.ready, going...)
	p.spare = append(p.spare, ended...)
	p.active -= len(ended)
	p.mu.Unlock()
	if len(going) > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// mbLane is one path's walk, writing its NAR into buf.
type mbLane struct {
	job      *mbJob
	buf      []byte          // mbBlock bytes
	n        int             // NAR bytes in buf
	direct   []byte          // a block to hash straight from the walk's slice, not buf
	size     uint64          // NAR bytes written
	chain    sha256x16.Chain // the stream's chaining value after hashed bytes
	hashed   uint64
	yield    func(struct{}) bool
	next     func() (struct{}, bool)
	stop     func()
	finished bool
	failed   error // why the driver failed the walk
}

var errStopped = errors.New("nar: hashing was stopped")

// full hands the full buffer to the driver and waits for the next round.
func (l *mbLane) full() error {
	if !l.yield(struct{}{}) {
		return errStopped
	}
	l.n = 0
	return nil
}

// block returns the lane's full block of this round.
func (l *mbLane) block() []byte {
	if l.direct != nil {
		return l.direct
	}
	return l.buf
}

// Write takes NAR bytes, handing each full block to the driver. While the
// buffer is empty, whole blocks of p (the NAR writer's flushes) are hashed where
// they are, without a copy; p is not kept after Write returns.
func (l *mbLane) Write(p []byte) (int, error) {
	written := len(p)
	for len(p) > 0 {
		if l.n == 0 && len(p) >= mbBlock {
			l.direct = p[:mbBlock]
			ok := l.yield(struct{}{})
			l.direct = nil
			if !ok {
				return written - len(p), errStopped
			}
			l.size += mbBlock
			p = p[mbBlock:]
			continue
		}
		c := copy(l.buf[l.n:], p)
		l.n += c
		l.size += uint64(c)
		p = p[c:]
		if l.n == mbBlock {
			if err := l.full(); err != nil {
				return written - len(p), err
			}
		}
	}
	return written, nil
}

// ReadFrom reads a file's contents straight into the lane's buffer: the NAR
// writer hands large files to it, which saves copying them once more.
func (l *mbLane) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		c, err := r.Read(l.buf[l.n:])
		l.n += c
		l.size += uint64(c)
		total += int64(c)
		if l.n == mbBlock {
			if err := l.full(); err != nil {
				return total, err
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (l *mbLane) start(j *mbJob) {
	l.job, l.n, l.size, l.finished, l.failed = j, 0, 0, false, nil
	l.chain, l.hashed = sha256x16.Start(), 0
	l.next, l.stop = iter.Pull(func(yield func(struct{}) bool) {
		l.yield = yield
		j.err = nar.DumpPath(l, j.fsPath)
	})
}

// drive runs rounds for as long as the process lives.
func (p *mbPool) drive() {
	var (
		s     sha256x16.State
		mine  []*mbLane
		bufs  [lanes][]byte
		done  [lanes]uint64
		going []*mbLane
		ended []*mbLane
	)
	for {
		mine = p.take(mine[:0])
		// Run each walk to its next full block or its end, then hash the full
		// blocks in one round.
		var mask uint16
		for i, l := range mine {
			if _, more := l.next(); more {
				mask |= 1 << i
				bufs[i] = l.block()
				s.Set(i, l.chain)
				done[i] = l.hashed
				continue
			}
			l.finished = true
		}
		if err := hashRound(&s, &bufs, mask, &done); err != nil {
			// Cannot happen (whole blocks only), but never a wrong digest.
			for i, l := range mine {
				if mask&(1<<i) != 0 {
					l.failed, l.finished = err, true
				}
			}
		}
		clear(bufs[:])
		going, ended = going[:0], ended[:0]
		for i, l := range mine {
			if !l.finished {
				l.chain, l.hashed = s.Get(i), done[i]
				going = append(going, l)
				continue
			}
			// Finish the stream (a failed walk's too, to free its lane).
			l.stop()
			s.Set(i, l.chain)
			sum, err := hashTail(&s, i, l.hashed, l.buf[:l.n])
			switch {
			case l.failed != nil:
				l.job.err = fmt.Errorf("hashing %s: %w", l.job.fsPath, l.failed)
			case l.job.err == nil:
				l.job.sum, l.job.size, l.job.err = sum, l.size, err
			}
			close(l.job.done)
			l.job, l.finished = nil, false
			ended = append(ended, l)
		}
		p.put(going, ended)
	}
}
