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

// Lookups made before the watcher's first list wait for it (a just-started node proxy that
// the kernel already hands connections to), then answer from the list; after the deadline
// they no longer wait.
func TestLookupsWaitForTheFirstList(t *testing.T) {
	s := NewStore()
	synced := make(chan struct{})
	s.GateUntil(synced, time.Now().Add(5*time.Second))
	found := make(chan bool, 1)
	go func() {
		_, ok := s.OnNode("agents/meshproxy", "n3")
		found <- ok
	}()
	select {
	case <-found:
		t.Fatal("a lookup before the first list must wait for it")
	case <-time.After(100 * time.Millisecond):
	}
	s.SetSlice("agents/meshproxy", "a", []Endpoint{{IP: "10.250.0.13", Port: 15006, NodeName: "n3"}})
	close(synced)
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("after the first list the node's proxy is known")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the lookup did not go ahead after the first list")
	}

	late := NewStore()
	late.GateUntil(make(chan struct{}), time.Now().Add(-time.Second))
	start := time.Now()
	if _, _, ok := late.PickAddr("demo/orders"); ok || time.Since(start) > 50*time.Millisecond {
		t.Fatal("past the deadline a lookup answers at once, from what is known")
	}
}
