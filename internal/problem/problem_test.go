package problem

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A client that aborts its request is not a server error: nothing is logged at
// ERROR. A real internal failure is logged, and its cause is not sent.
func TestWriteLogsServerFailuresOnly(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest(http.MethodPost, "/nix/enroll", nil).WithContext(ctx)
	Write(httptest.NewRecorder(), r, log, fmt.Errorf("reading the body: %w", context.Canceled))
	if logs.Len() != 0 {
		t.Fatalf("an aborted request was logged: %s", logs.String())
	}

	w := httptest.NewRecorder()
	Write(w, httptest.NewRequest(http.MethodGet, "/crl/nix.crl", nil), log, errors.New("disk on fire"))
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("an internal failure was not logged: %q", logs.String())
	}
	if w.Code != 500 || strings.Contains(w.Body.String(), "disk on fire") {
		t.Fatalf("answer %d %s", w.Code, w.Body.String())
	}
}

// A problem made from an error keeps it as its cause.
func TestNewKeepsCause(t *testing.T) {
	_, cause := base64.StdEncoding.DecodeString("!")
	p := BadRequest("the path is not base64: %v", cause)
	var ce base64.CorruptInputError
	if !errors.As(p, &ce) || p.Detail != "the path is not base64: "+cause.Error() {
		t.Errorf("problem %q does not wrap its cause %v", p.Detail, cause)
	}
	if p := BadRequest("no cause"); p.Err != nil {
		t.Errorf("a problem without an error argument has cause %v", p.Err)
	}
}
