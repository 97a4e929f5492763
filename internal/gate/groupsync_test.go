package gate

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Every caller returns only after a sync that started after its change finished, and
// concurrent callers share syncs.
func TestGroupSync(t *testing.T) {
	var s groupSync
	var changes, covered, syncs atomic.Int64
	var fail atomic.Bool
	syncFn := func() error {
		n := changes.Load() // the changes this sync makes durable
		time.Sleep(time.Millisecond)
		syncs.Add(1)
		if fail.Load() {
			return errors.New("fsync failed")
		}
		covered.Store(n) // syncs run one at a time: n only grows
		return nil
	}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := changes.Add(1)
			if err := s.sync(syncFn); err != nil {
				t.Error(err)
				return
			}
			if c := covered.Load(); c < mine {
				t.Errorf("change %d returned before a sync covered it (covered up to %d)", mine, c)
			}
		}()
	}
	wg.Wait()
	if n := syncs.Load(); n >= 64 {
		t.Errorf("%d syncs for 64 concurrent callers: not grouped", n)
	}
	fail.Store(true)
	if err := s.sync(syncFn); err == nil {
		t.Error("a failed sync reported success")
	}
}
