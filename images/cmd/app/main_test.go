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

// ROUTE=one: each request calls exactly one downstream, each in turn, so a large topology
// spreads its load; ROUTE=all (the default) calls every downstream on every request.
func TestRouteOneCallsTheDownstreamsInTurn(t *testing.T) {
	var hits [3]atomic.Int64
	var names []string
	for i := range hits {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"service":"d"}`))
		}))
		defer srv.Close()
		names = append(names, strings.TrimPrefix(srv.URL, "http://"))
	}
	for _, routeOne := range []bool{true, false} {
		for i := range hits {
			hits[i].Store(0)
		}
		a := &app{
			s:      settings{Service: "a", Downstreams: names, Timeout: time.Second, RouteOne: routeOne},
			log:    applog.NewWriter(&bytes.Buffer{}, "a-0", ""),
			client: http.DefaultClient,
		}
		for n := 0; n < 6; n++ {
			rec := httptest.NewRecorder()
			a.root(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			want := 3
			if routeOne {
				want = 1
			}
			if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `"status":200`) != want {
				t.Fatalf("route one %v: request %d answered %d with %s, want %d downstream calls", routeOne, n, rec.Code, rec.Body, want)
			}
		}
		for i := range hits {
			want := int64(6)
			if routeOne {
				want = 2
			}
			if got := hits[i].Load(); got != want {
				t.Fatalf("route one %v: downstream %d called %d times in 6 requests, want %d", routeOne, i, got, want)
			}
		}
	}
	cmdtest.ExpectOneLineNaming(t, "ROUTE", "SERVICE_NAME=a", "ROUTE=some")
}
