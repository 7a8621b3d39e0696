package mesh

import "testing"

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
