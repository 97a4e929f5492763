package verify

import (
	"errors"
	"iter"
	"runtime"
	"sync"

	"nixpki/internal/nix/nar"
	"nixpki/internal/sha256x16"
)

// Multi-buffer NAR hashing: one driver goroutine per core hashes the NARs of up
// to sixteen paths at once with sha256x16, several times the throughput of one
// crypto/sha256 stream (see internal/keys/primitives.go). Each path's walk
// (nar.DumpPath) runs as a coroutine of the driver (iter.Pull) and writes its NAR into
// its lane's buffer; when the buffer is full the walk yields. Once every busy lane
// has yielded (a full block) or finished (its last bytes, padded), the driver
// hashes all sixteen in one call, whose cost is that of the longest block, and
// resumes the walks. No channel or lock is crossed per block: only each path's
// job and its result go through a channel.

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
	buf      []byte // mbBlock bytes and room for the padding
	n        int    // NAR bytes in buf
	size     uint64 // NAR bytes written
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

func mbDrive(q chan *mbJob) {
	s := sha256x16.New()
	var lanes [sha256x16.Lanes]mbLane
	for i := range lanes {
		lanes[i].buf = make([]byte, mbBlock, mbBlock+2*sha256x16.BlockSize)
	}
	busy := 0
	for {
		// Fill free lanes: wait for a job only when all are free.
		for i := range lanes {
			l := &lanes[i]
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
			l.start(j)
			busy++
		}
		// Run every busy walk to its next full block or its end.
		var in [sha256x16.Lanes][]byte
		for i := range lanes {
			l := &lanes[i]
			if l.job == nil {
				continue
			}
			if _, more := l.next(); more {
				in[i] = l.buf[:mbBlock]
				continue
			}
			l.finished = true
			if l.job.err == nil {
				in[i] = s.Pad(i, l.buf[:l.n])
			}
		}
		s.Blocks(&in)
		for i := range lanes {
			l := &lanes[i]
			if !l.finished {
				continue
			}
			l.stop()
			if l.job.err == nil {
				l.job.sum, l.job.size = s.Sum(i), l.size
			}
			close(l.job.done)
			s.Reset(i)
			l.job, l.finished = nil, false
			busy--
		}
	}
}
