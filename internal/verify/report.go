package verify

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Reporter writes what a run finds: each problem as a line on stderr (as Nix does),
// progress on stderr for long runs, one JSON object per path on a JSON writer if
// one is set, and a summary line at the end.
type Reporter struct {
	Stderr io.Writer
	// TTY: stderr is a terminal, so progress is a line redrawn in place;
	// otherwise a progress line is printed now and then once a run takes
	// longer than ProgressAfter.
	TTY bool
	// JSON, if set, receives one JSON object per path, one per line.
	JSON io.Writer
	// ProgressAfter and ProgressEvery pace progress lines when not on a
	// terminal (defaults 2 s and 5 s).
	ProgressAfter, ProgressEvery time.Duration

	mu      sync.Mutex
	shown   bool // a progress line is on the terminal
	jsonErr error
	stop    chan struct{}
	done    chan struct{}
}

// clearLocked removes the progress line from the terminal.
func (r *Reporter) clearLocked() {
	if r.shown {
		fmt.Fprint(r.Stderr, "\r\x1b[K")
		r.shown = false
	}
}

// Message prints a line on stderr.
func (r *Reporter) Message(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearLocked()
	fmt.Fprintf(r.Stderr, format+"\n", args...)
}

// Result reports one path: its problems on stderr and, with JSON, its object.
func (r *Reporter) Result(res *Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(res.Problems) > 0 {
		r.clearLocked()
		for _, p := range res.Problems {
			fmt.Fprintln(r.Stderr, p)
		}
	}
	if r.JSON != nil && r.jsonErr == nil {
		b, err := json.Marshal(res)
		if err == nil {
			b = append(b, '\n')
			_, err = r.JSON.Write(b)
		}
		r.jsonErr = err
	}
}

// JSONError is the first error writing JSON, if any.
func (r *Reporter) JSONError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.jsonErr
}

// StartProgress shows p until StopProgress.
func (r *Reporter) StartProgress(p *Progress) {
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	after, every := r.ProgressAfter, r.ProgressEvery
	if after <= 0 {
		after = 2 * time.Second
	}
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := every
	if r.TTY {
		after, tick = 300*time.Millisecond, 200*time.Millisecond
	}
	start := time.Now()
	go func() {
		defer close(r.done)
		first := time.NewTimer(after)
		defer first.Stop()
		select {
		case <-r.stop:
			return
		case <-first.C:
		}
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			r.showProgress(p, time.Since(start))
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// StopProgress stops showing progress and clears the progress line.
func (r *Reporter) StopProgress() {
	if r.stop == nil {
		return
	}
	close(r.stop)
	<-r.done
	r.mu.Lock()
	r.clearLocked()
	r.mu.Unlock()
}

func (r *Reporter) showProgress(p *Progress, elapsed time.Duration) {
	var line string
	if p.Querying.Load() {
		line = fmt.Sprintf("reading path records: %d paths (%s) so far", p.Paths.Load(), bytesText(p.Bytes.Load()))
	} else {
		done, total := p.DoneBytes.Load(), p.Bytes.Load()
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		line = fmt.Sprintf("checked %d of %d paths, %s of %s (%.0f%%), %s/s", p.DonePaths.Load(), p.Paths.Load(),
			bytesText(done), bytesText(total), pct, bytesText(uint64(float64(done)/elapsed.Seconds())))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.TTY {
		fmt.Fprintf(r.Stderr, "\r\x1b[K%s", line)
		r.shown = true
	} else {
		fmt.Fprintln(r.Stderr, line)
	}
}

// Summary prints the closing line.
func (r *Reporter) Summary(s Summary) {
	secs := s.Elapsed.Seconds()
	rate := ""
	if secs > 0 && s.Bytes > 0 {
		rate = fmt.Sprintf(", %s/s", bytesText(uint64(float64(s.Bytes)/secs)))
	}
	paths := "paths"
	if s.Paths == 1 {
		paths = "path"
	}
	r.Message("checked %d %s (%s) in %.2fs%s: %d ok, %d corrupt, %d untrusted, %d with errors",
		s.Paths, paths, bytesText(s.Bytes), secs, rate, s.OK, s.Corrupt, s.Untrusted, s.Failed)
}

// bytesText renders a byte count in binary units.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
