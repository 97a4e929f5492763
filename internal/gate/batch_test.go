package gate

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Narinfo uploads that queue for the admission lock are admitted in one batch (one
// transaction, one log fsync) with the verdicts they would get one by one, in
// arrival order: a path is judged after the earlier ones of its batch (app after
// its reference dep), a rejection in the batch takes nothing from the others, and
// each admission is in the log, which verifies.
func TestBatchedAdmissions(t *testing.T) {
	tg := newTestGate(t, nil)
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	mallory := tg.pki.member(t, "mallory-1", "mallory", []string{"host-a"}, scopeAny, nil) // never enrolled
	tg.enroll(t, alice)

	dep := storePath("dep")
	var ups []upload
	ups = append(ups, upload{path: dep, contents: "dep", signers: []member{alice}})
	ups = append(ups, upload{path: storePath("app"), contents: "app", refs: []string{dep}, signers: []member{alice}})
	for i := range 10 {
		ups = append(ups, upload{path: storePath("leaf"), contents: strings.Repeat("leaf", i+1), signers: []member{alice}})
	}
	bad := storePath("uncertified")
	ups = append(ups, upload{path: bad, contents: "uncertified", signers: []member{mallory}})

	// NARs first, one by one; then every narinfo queued behind the held lock, in order.
	var reqs []*prepared
	for _, u := range ups {
		pu := prepareNAR(t, u)
		if s, b := tg.putNAR(t, pu); s != 200 {
			t.Fatalf("NAR of %s: %d %s", u.path, s, b)
		}
		pu.sign(t, u)
		reqs = append(reqs, pu)
	}
	type answer struct {
		status int
		body   string
		err    error
	}
	answers := make([]chan answer, len(reqs))
	tg.mu.Lock()
	for i, pu := range reqs {
		answers[i] = make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest("PUT", tg.srv.URL+pu.narinfoPath, bytes.NewReader(pu.narinfo))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				answers[i] <- answer{err: err}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			answers[i] <- answer{status: res.StatusCode, body: string(b)}
		}()
		// Wait (bounded) until it is queued, so the queue holds them in this order.
		for tries := 0; ; tries++ {
			tg.admitMu.Lock()
			n := len(tg.admitQ)
			tg.admitMu.Unlock()
			if n == i+1 {
				break
			}
			if tries == 1000 {
				tg.mu.Unlock()
				t.Fatalf("narinfo %d not queued after 10 s (queue %d)", i, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	logBefore := tg.tlog.Head().Size
	tg.mu.Unlock()

	for i, u := range ups {
		a := <-answers[i]
		switch {
		case a.err != nil:
			t.Errorf("%s: %v", u.path, a.err)
		case u.path == bad:
			if a.status != 403 || !strings.Contains(a.body, "rejected "+bad) || !strings.Contains(a.body, "no signature counts") {
				t.Errorf("uncertified in a batch: %d %s", a.status, a.body)
			}
			if _, ok := tg.served(t, bad); ok {
				t.Errorf("uncertified path served")
			}
		default:
			if a.status != 200 || !strings.Contains(a.body, "admitted "+u.path) {
				t.Errorf("%s in a batch: %d %s", u.path, a.status, a.body)
			}
			if _, ok := tg.served(t, u.path); !ok {
				t.Errorf("%s admitted but not served", u.path)
			}
		}
	}
	// One entry per upload (admission or rejection), all in a log that verifies.
	if n := tg.tlog.Head().Size - logBefore; n != uint64(len(ups)) {
		t.Errorf("the batch logged %d entries, want %d", n, len(ups))
	}
	evs, _, err := Audit(tg.dir, ups[1].path)
	if err != nil || len(evs) == 0 || evs[len(evs)-1].Type != "admission" {
		t.Errorf("audit of app: %+v %v", evs, err)
	}
}
