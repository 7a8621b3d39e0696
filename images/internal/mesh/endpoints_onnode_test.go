package mesh

import (
	"testing"
	"time"
)

// A node proxy missing from the slices for a moment (its DaemonSet rolling) is still found
// at its node's last known address; a node never seen has none.
func TestOnNodeKeepsTheLastKnownNodeProxy(t *testing.T) {
	s := NewStore()
	s.SetSlice("agents/l4proxy", "a", []Endpoint{{IP: "10.250.0.11", Port: 15008, NodeName: "n1"}})
	if ep, ok := s.OnNode("agents/l4proxy", "n1"); !ok || ep.IP != "10.250.0.11" {
		t.Fatalf("listed proxy: %v %v", ep, ok)
	}
	s.SetSlice("agents/l4proxy", "a", nil)
	if ep, ok := s.OnNode("agents/l4proxy", "n1"); !ok || ep.IP != "10.250.0.11" {
		t.Fatalf("during the roll the last known address must still answer, got %v %v", ep, ok)
	}
	if _, ok := s.OnNode("agents/l4proxy", "n2"); ok {
		t.Fatal("a node never seen has no proxy")
	}
}

// The roll seen on the cluster (1 DaemonSet roll in 15, 27 calls in 0.23 s): node 3's proxy
// has just started and listed node 2's proxy, but never looked it up; node 2's old proxy
// terminates (listed, not ready), leaves the slice, and its successor is listed not ready
// before it is ready. Node 3's proxy must find node 2's address at every step.
func TestOnNodeFromAFreshStoreThroughARoll(t *testing.T) {
	const svc = "agents/meshproxy"
	s := NewStore()
	s.Replace(map[string]map[string][]Endpoint{svc: {"mp": {
		{IP: "10.250.0.12", Port: 15006, NodeName: "n2", PodName: "old"},
		{IP: "10.250.0.13", Port: 15006, NodeName: "n3", PodName: "new3"}}}})
	steps := []struct {
		what string
		eps  []Endpoint
	}{
		{"old pod terminating", []Endpoint{{IP: "10.250.0.12", Port: 15006, NodeName: "n2", PodName: "old", NotReady: true}}},
		{"old pod gone, successor not created", nil},
		{"successor listed, not ready", []Endpoint{{IP: "10.250.0.12", Port: 15006, NodeName: "n2", PodName: "new2", NotReady: true}}},
		{"successor ready", []Endpoint{{IP: "10.250.0.12", Port: 15006, NodeName: "n2", PodName: "new2"}}},
	}
	for _, step := range steps {
		s.SetSlice(svc, "mp", append(step.eps, Endpoint{IP: "10.250.0.13", Port: 15006, NodeName: "n3", PodName: "new3"}))
		if ep, ok := s.OnNode(svc, "n2"); !ok || ep.IP != "10.250.0.12" {
			t.Fatalf("%s: node 2's proxy not found (%+v %v)", step.what, ep, ok)
		}
		if eps := s.Endpoints(svc); len(eps) != 1+len(step.eps)-countNotReady(step.eps) {
			t.Fatalf("%s: a not-ready proxy was picked from: %+v", step.what, eps)
		}
	}
	if ep, _ := s.OnNode(svc, "n2"); ep.PodName != "new2" || ep.NotReady {
		t.Fatalf("a ready proxy is preferred, got %+v", ep)
	}
}

func countNotReady(eps []Endpoint) int {
	n := 0
	for _, ep := range eps {
		if ep.NotReady {
			n++
		}
	}
	return n
}

// Lookups made before the watcher's first list wait for it (a just-started node proxy that
// the kernel already hands connections to, on its outbound and its inbound side), then
// answer from the list; after the deadline they no longer wait.
func TestLookupsWaitForTheFirstList(t *testing.T) {
	lookups := map[string]func(*Store) bool{
		"OnNode":      func(s *Store) bool { _, ok := s.OnNode("agents/meshproxy", "n3"); return ok },
		"PickAddr":    func(s *Store) bool { _, _, ok := s.PickAddr("agents/meshproxy"); return ok },
		"HasEndpoint": func(s *Store) bool { return s.HasEndpoint("10.250.0.13", "15006") },
		"Find":        func(s *Store) bool { _, ok := s.Find("agents/meshproxy", "10.250.0.13", 15006); return ok },
	}
	for name, lookup := range lookups {
		s := NewStore()
		synced := make(chan struct{})
		s.GateUntil(synced, time.Now().Add(5*time.Second))
		found := make(chan bool, 1)
		go func() { found <- lookup(s) }()
		select {
		case <-found:
			t.Fatalf("%s: a lookup before the first list must wait for it", name)
		case <-time.After(100 * time.Millisecond):
		}
		s.SetSlice("agents/meshproxy", "a", []Endpoint{{IP: "10.250.0.13", Port: 15006, NodeName: "n3"}})
		close(synced)
		select {
		case ok := <-found:
			if !ok {
				t.Fatalf("%s: after the first list the node's proxy is known", name)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: the lookup did not go ahead after the first list", name)
		}
	}

	late := NewStore()
	late.GateUntil(make(chan struct{}), time.Now().Add(-time.Second))
	start := time.Now()
	if _, _, ok := late.PickAddr("demo/orders"); ok || time.Since(start) > 50*time.Millisecond {
		t.Fatal("past the deadline a lookup answers at once, from what is known")
	}
}
