package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func slice(name, service, ip string, ready bool, rv int) map[string]any {
	return map[string]any{
		"metadata":    map[string]any{"name": name, "namespace": "demo", "resourceVersion": fmt.Sprint(rv), "labels": map[string]string{"kubernetes.io/service-name": service}},
		"addressType": "IPv4",
		"endpoints":   []any{map[string]any{"addresses": []string{ip}, "conditions": map[string]any{"ready": ready}, "nodeName": "n1"}},
		"ports":       []any{map[string]any{"port": 8080, "protocol": "TCP"}},
	}
}

// fakeAPI serves one list and scripted watch streams. It stands in for the API server's
// wire protocol only: what the watcher does with 410 Gone and dropped streams is our code.
type fakeAPI struct {
	mu      sync.Mutex
	lists   atomic.Int64
	watches atomic.Int64
	list    []map[string]any
	listRV  int
	streams []func(w http.ResponseWriter, flush func()) // one per watch call, in order
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices" {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("watch") == "" {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lists.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"resourceVersion": fmt.Sprint(f.listRV)}, "items": f.list})
		return
	}
	n := int(f.watches.Add(1)) - 1
	if n >= len(f.streams) {
		time.Sleep(200 * time.Millisecond) // an idle watch
		return
	}
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	f.streams[n](w, flusher.Flush)
}

func event(w http.ResponseWriter, typ string, obj any) {
	_ = json.NewEncoder(w).Encode(map[string]any{"type": typ, "object": obj})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestWatcherFollowsEventsRelistsOnGoneAndReconnects(t *testing.T) {
	gate := make(chan struct{})
	api := &fakeAPI{list: []map[string]any{slice("web-1", "web", "10.0.0.1", true, 5)}, listRV: 5}
	api.streams = []func(http.ResponseWriter, func()){
		func(w http.ResponseWriter, flush func()) { // events, then the server ends the watch
			event(w, "ADDED", slice("web-2", "web", "10.0.0.2", true, 6))
			event(w, "MODIFIED", slice("web-1", "web", "10.0.0.1", false, 7)) // no longer ready
			flush()
		},
		func(w http.ResponseWriter, flush func()) { // resumed watch: too old
			<-gate
			event(w, "ERROR", map[string]any{"kind": "Status", "code": 410, "reason": "Expired"})
			flush()
		},
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	store := NewStore()
	w := &Watcher{API: &API{Base: srv.URL, HTTP: srv.Client()}, Namespace: "demo", Store: store, Synced: make(chan struct{}), WatchTimeout: time.Second, MaxBackoff: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// After the 410 the watcher re-lists: by then the list says web-1 is gone and web-3 is new.
	go w.Run(ctx)
	<-w.Synced
	waitFor(t, "events applied", func() bool {
		eps := store.Endpoints("demo/web")
		return len(eps) == 1 && eps[0].IP == "10.0.0.2"
	})
	api.mu.Lock()
	api.list = []map[string]any{slice("web-3", "web", "10.0.0.3", true, 9)}
	api.listRV = 9
	api.mu.Unlock()
	close(gate)
	waitFor(t, "re-list after 410 Gone", func() bool {
		eps := store.Endpoints("demo/web")
		return api.lists.Load() >= 2 && len(eps) == 1 && eps[0].IP == "10.0.0.3"
	})
}

func TestWatcherRetriesAFailingList(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "etcd is having a moment", http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("watch") != "" {
			time.Sleep(100 * time.Millisecond)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"metadata": map[string]any{"resourceVersion": "1"}, "items": []any{slice("a-1", "a", "10.0.0.9", true, 1)}})
	}))
	defer srv.Close()
	store := NewStore()
	w := &Watcher{API: &API{Base: srv.URL, HTTP: srv.Client()}, Namespace: "demo", Store: store, Synced: make(chan struct{}), MaxBackoff: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	select {
	case <-w.Synced:
	case <-time.After(5 * time.Second):
		t.Fatal("never synced after list failures")
	}
	if _, ok := store.Pick("demo/a"); !ok {
		t.Fatal("list content not in the store")
	}
}
