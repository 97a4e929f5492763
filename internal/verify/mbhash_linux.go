package verify

import (
	"errors"
	"iter"
	"runtime"
	"sync"

	"nixpki/internal/nix/nar"
)

// Multi-buffer NAR hashing: one driver goroutine per core hashes the NARs of up
// to sixteen paths at once with a laneHasher (lanes.go): on AVX-512, several
// times the throughput of one crypto/sha256 stream (see
// internal/keys/primitives.go). Each path's walk (nar.DumpPath) runs as a
// coroutine of the driver (iter.Pull) and writes its NAR into its lane's buffer;
// when the buffer is full the walk yields. Once every busy lane has yielded (a
// full block) or finished, the driver hands the full blocks to the hasher, which
// hashes them in one round whose cost is that of the longest block, finishes the
// streams that ended and resumes the walks. Each lane rotates three buffers, so
// that a walk fills one while the hasher may still read the others (flip).

// mbBlock is how many NAR bytes a lane hashes per round: sixteen of them stay in
// the L2 cache between the copy and the hash.
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

// mbHashPath is hashPath through the multi-buffer drivers.
func mbHashPath(fsPath string) ([32]byte, uint64, error) {
	j := &mbJob{fsPath: fsPath, done: make(chan struct{})}
	mbQueue() <- j
	<-j.done
	return j.sum, j.size, j.err
}

// mbLane is one path's walk, writing its NAR into buf.
type mbLane struct {
	job      *mbJob
	bufs     [3][]byte // mbBlock bytes and room for the padding
	cur      int       // the one being filled
	buf      []byte    // bufs[cur]
	n        int       // NAR bytes in buf
	size     uint64    // NAR bytes written
	yield    func(struct{}) bool
	next     func() (struct{}, bool)
	stop     func()
	finished bool
}

var errStopped = errors.New("nar: hashing was stopped")

// Write takes NAR bytes, handing each full block to the driver.
func (l *mbLane) Write(p []byte) (int, error) {
	written := len(p)
	for len(p) > 0 {
		c := copy(l.buf[l.n:mbBlock], p)
		l.n += c
		p = p[c:]
		if l.n == mbBlock {
			if !l.yield(struct{}{}) {
				return written - len(p), errStopped
			}
			l.n = 0
		}
	}
	l.size += uint64(written)
	return written, nil
}

func (l *mbLane) start(j *mbJob) {
	l.job, l.n, l.size, l.finished = j, 0, 0, false
	l.next, l.stop = iter.Pull(func(yield func(struct{}) bool) {
		l.yield = yield
		j.err = nar.DumpPath(l, j.fsPath)
	})
}

// flip makes the lane fill its next buffer. The AVX-512 hasher's goroutine
// takes a block as it is sent and hashes it at the latest while taking the
// lane's next block; a send returns once the hasher took the block, not once it
// handled it, but it took it after handling every earlier one. So a block sent
// in one round is hashed once the next round's first block was sent, and a
// buffer may be filled again two rounds after it was sent: three per lane.
func (l *mbLane) flip() {
	l.cur = (l.cur + 1) % len(l.bufs)
	l.buf = l.bufs[l.cur]
}

func mbDrive(q chan *mbJob) {
	h := newLaneHasher()
	var ls [lanes]mbLane
	for i := range ls {
		l := &ls[i]
		for b := range l.bufs {
			l.bufs[b] = make([]byte, mbBlock, mbBlock+128)
		}
		l.buf = l.bufs[0]
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
		// Run every busy walk to its next full block or its end, handing the
		// full blocks to the hasher.
		for i := range ls {
			l := &ls[i]
			if l.job == nil {
				continue
			}
			if _, more := l.next(); more {
				h.write(i, l.buf[:mbBlock])
				l.flip()
				continue
			}
			l.finished = true
		}
		// Finish the streams that ended (a failed walk's too, to free its lane).
		for i := range ls {
			l := &ls[i]
			if !l.finished {
				continue
			}
			l.stop()
			sum := h.sum(i, l.buf[:l.n], l.size)
			if l.job.err == nil {
				l.job.sum, l.job.size = sum, l.size
			}
			close(l.job.done)
			l.job, l.finished = nil, false
			busy--
		}
	}
}
