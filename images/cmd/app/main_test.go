package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"patternbench.local/images/internal/applog"
	"patternbench.local/images/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

func TestBadConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "SERVICE_NAME")
	cmdtest.ExpectOneLineNaming(t, "MESH_PROXY", "SERVICE_NAME=a", "MESH_PROXY=not-an-address")
	cmdtest.ExpectOneLineNaming(t, "DRAIN", "SERVICE_NAME=a", "DRAIN=soon")
	cmdtest.ExpectOneLineNaming(t, "LOG_PATH", "SERVICE_NAME=a", "LOG_PATH=/nonexistent/dir/app.log", "LISTEN=127.0.0.1:0")
}

// The chain readiness check follows real calls: it fails while a downstream does not
// answer, passes once it does, and never writes a request log line.
func TestReadyzChain(t *testing.T) {
	var downstreamUp atomic.Bool
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !downstreamUp.Load() || r.URL.Path != "/readyz" || r.URL.Query().Get("chain") != "1" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer down.Close()
	var logged bytes.Buffer
	a := &app{
		s:      settings{Service: "a", Downstreams: []string{strings.TrimPrefix(down.URL, "http://")}, Timeout: time.Second},
		log:    applog.NewWriter(&logged, "a-0", ""),
		client: down.Client(),
	}
	status := func(target string) int {
		rec := httptest.NewRecorder()
		a.readyz(rec, httptest.NewRequest(http.MethodGet, target, nil))
		return rec.Code
	}
	if got := status("/readyz"); got != http.StatusOK {
		t.Fatalf("plain /readyz = %d, want 200 whatever the downstreams do", got)
	}
	if got := status("/readyz?chain=1"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz?chain=1 with a downstream not ready = %d, want 503", got)
	}
	downstreamUp.Store(true)
	if got := status("/readyz?chain=1"); got != http.StatusOK {
		t.Fatalf("/readyz?chain=1 with every downstream ready = %d, want 200", got)
	}
	if logged.Len() != 0 {
		t.Fatalf("readiness wrote request log lines: %q", logged.String())
	}
}
