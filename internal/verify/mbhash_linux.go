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
)

// Multi-path NAR hashing: one driver goroutine per core hashes the NARs of up
// to sixteen paths at once (laneHashers, lanes.go). Each path's walk
// (nar.DumpPath) runs as a coroutine of the driver (iter.Pull) and writes its
// NAR into its lane's buffer; when the buffer is full the walk yields. Once
// every busy walk has yielded (a full block) or finished, the driver hashes the
// full blocks in one round, finishes the streams that ended and resumes the
// walks. Hashing runs on the driver's goroutine, so a buffer is free again as
// soon as its round returns.

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

var mbQueue = sync.OnceValue(func() chan *mbJob {
	q := make(chan *mbJob)
	for range runtime.GOMAXPROCS(0) {
		go mbDrive(q) // idle drivers wait on q and cost nothing
	}
	return q
})

// mbHashPath is hashPath through the multi-path drivers.
func mbHashPath(fsPath string) ([32]byte, uint64, error) {
	j := &mbJob{fsPath: fsPath, done: make(chan struct{})}
	mbQueue() <- j
	<-j.done
	return j.sum, j.size, j.err
}

// mbLane is one path's walk, writing its NAR into buf.
type mbLane struct {
	job      *mbJob
	buf      []byte // mbBlock bytes
	n        int    // NAR bytes in buf
	direct   []byte // a block to hash straight from the walk's slice, not buf
	size     uint64 // NAR bytes written
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
	l.next, l.stop = iter.Pull(func(yield func(struct{}) bool) {
		l.yield = yield
		j.err = nar.DumpPath(l, j.fsPath)
	})
}

func mbDrive(q chan *mbJob) {
	var h laneHashers
	var ls [lanes]mbLane
	var bufs [lanes][]byte
	for i := range ls {
		ls[i].buf = make([]byte, mbBlock)
	}
	busy := 0
	for {
		// Fill free lanes: wait for a job only when all are free.
		for i := range ls {
			l := &ls[i]
			if l.job != nil {
				continue
			}
			var j *mbJob
			if busy == 0 {
				j = <-q
			} else {
				select {
				case j = <-q:
				default:
				}
			}
			if j == nil {
				break
			}
			h.start(i)
			l.start(j)
			busy++
		}
		// Run every busy walk to its next full block or its end, then hash the
		// full blocks in one round.
		var mask uint16
		for i := range ls {
			l := &ls[i]
			if l.job == nil {
				continue
			}
			if _, more := l.next(); more {
				mask |= 1 << i
				bufs[i] = l.block()
				continue
			}
			l.finished = true
		}
		if err := h.round(&bufs, mask); err != nil {
			// Cannot happen (whole blocks only), but never a wrong digest.
			for i := range ls {
				if mask&(1<<i) != 0 {
					ls[i].failed, ls[i].finished = err, true
				}
			}
		}
		clear(bufs[:])
		// Finish the streams that ended (a failed walk's too, to free its lane).
		for i := range ls {
			l := &ls[i]
			if !l.finished {
				continue
			}
			l.stop()
			sum, err := h.sum(i, l.buf[:l.n])
			switch {
			case l.failed != nil:
				l.job.err = fmt.Errorf("hashing %s: %w", l.job.fsPath, l.failed)
			case l.job.err == nil:
				l.job.sum, l.job.size, l.job.err = sum, l.size, err
			}
			close(l.job.done)
			l.job, l.finished = nil, false
			busy--
		}
	}
}
