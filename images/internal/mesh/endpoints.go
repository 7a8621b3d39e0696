package mesh

import (
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one address of a Service.
type Endpoint struct {
	IP       string
	Port     int
	NodeName string
	PodName  string
	// NotReady: listed in the slice but not ready (starting, or terminating). Only OnNode
	// uses such an address, and only when its node has no ready one.
	NotReady bool
}

// Store holds the ready endpoints of every known Service, merged from its EndpointSlices,
// and hands them out round-robin.
type Store struct {
	mu     sync.RWMutex
	slices map[string]map[string][]Endpoint // service key -> slice name -> endpoints
	// The last endpoint listed on each node, ready or not, per service ("service@node"),
	// kept after it leaves the slices: OnNode's answer while a node proxy rolls.
	lastOnNode map[string]Endpoint
	merged     map[string][]Endpoint // ready endpoints only
	picks      map[string]*pickable  // service key -> what PickAddr needs, in one lookup
	next       map[string]*atomic.Uint64
	// Waypoints, from the WaypointLabel of the waypoints' slices: waypoint service key ->
	// slice -> the service key it takes calls for; and that, inverted. Kept apart from the
	// endpoints, so a waypoint with no ready pod still stands in front of its Service.
	waypointSlices map[string]map[string]string
	waypoints      map[string]string
	// Lookups wait for gate (closed once the watcher has listed everything) until
	// gateDeadline (GateUntil); nil: they never wait.
	gate         <-chan struct{}
	gateDeadline time.Time
}

// GateUntil makes lookups (every method that answers a call: OnNode, PickAddr, HasEndpoint,
// Find, WaypointOf) wait until synced is closed (the watcher's first list), at most
// until deadline. A node proxy binds its ports beside its predecessor's (SO_REUSEPORT) as it
// starts, and the kernel hands it new connections at once: before it knows any endpoint it
// would fail them ("no node proxy on node ..."). Seen in the soak of issue 18: 15 calls in
// 0.9 s of a DaemonSet roll, all through the node whose proxy had just started. Call it
// before the Store is shared.
func (s *Store) GateUntil(synced <-chan struct{}, deadline time.Time) {
	s.gate, s.gateDeadline = synced, deadline
}

// waitSynced returns at once after the first list (or without a gate).
func (s *Store) waitSynced() {
	if s.gate == nil {
		return
	}
	select {
	case <-s.gate:
		return
	default:
	}
	if wait := time.Until(s.gateDeadline); wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-s.gate:
		case <-timer.C:
		}
	}
}

// pickable is a service's endpoints with their "ip:port", made once, and its round-robin.
type pickable struct {
	eps   []Endpoint
	addrs []string
	next  *atomic.Uint64
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{slices: map[string]map[string][]Endpoint{}, lastOnNode: map[string]Endpoint{}, merged: map[string][]Endpoint{}, picks: map[string]*pickable{}, next: map[string]*atomic.Uint64{},
		waypointSlices: map[string]map[string]string{}, waypoints: map[string]string{}}
}

// SetWaypoint records that a waypoint's slice (of service waypoint) names the service key
// it takes calls for; "" says it names none.
func (s *Store) SetWaypoint(waypoint, slice, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if target == "" {
		if _, ok := s.waypointSlices[waypoint][slice]; !ok {
			return
		}
		delete(s.waypointSlices[waypoint], slice)
	} else {
		if s.waypointSlices[waypoint] == nil {
			s.waypointSlices[waypoint] = map[string]string{}
		}
		s.waypointSlices[waypoint][slice] = target
	}
	s.reindexWaypoints()
}

// ReplaceWaypoints swaps every waypoint slice after a re-list.
func (s *Store) ReplaceWaypoints(all map[string]map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waypointSlices = all
	s.reindexWaypoints()
}

func (s *Store) reindexWaypoints() {
	s.waypoints = map[string]string{}
	for waypoint, slices := range s.waypointSlices {
		if len(slices) == 0 {
			delete(s.waypointSlices, waypoint)
		}
		for _, target := range slices {
			// Two waypoints claiming one Service: the first by name, the same on every node.
			if cur, ok := s.waypoints[target]; !ok || waypoint < cur {
				s.waypoints[target] = waypoint
			}
		}
	}
}

// WaypointOf returns the waypoint service key in front of service, if it has one.
func (s *Store) WaypointOf(service string) (string, bool) {
	s.waitSynced()
	s.mu.RLock()
	defer s.mu.RUnlock()
	wp, ok := s.waypoints[service]
	return wp, ok
}

// Find returns the endpoint of service at ip:port.
func (s *Store) Find(service, ip string, port int) (Endpoint, bool) {
	s.waitSynced()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ep := range s.merged[service] {
		if ep.IP == ip && ep.Port == port {
			return ep, true
		}
	}
	return Endpoint{}, false
}

// SetSlice replaces one slice's endpoints (an ADDED or MODIFIED event).
func (s *Store) SetSlice(service, slice string, eps []Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slices[service] == nil {
		s.slices[service] = map[string][]Endpoint{}
	}
	s.slices[service][slice] = eps
	s.remerge(service)
}

// DeleteSlice forgets a slice (a DELETED event).
func (s *Store) DeleteSlice(service, slice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.slices[service], slice)
	s.remerge(service)
	if _, ok := s.waypointSlices[service][slice]; ok {
		delete(s.waypointSlices[service], slice)
		s.reindexWaypoints()
	}
}

// Replace swaps the whole content after a re-list; slices not listed are gone.
func (s *Store) Replace(all map[string]map[string][]Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slices = all
	s.merged = map[string][]Endpoint{}
	s.picks = map[string]*pickable{}
	for service := range all {
		s.remerge(service)
	}
}

func (s *Store) remerge(service string) {
	var eps []Endpoint
	for _, part := range s.slices[service] {
		for _, ep := range part {
			if ep.NodeName != "" {
				if cur, ok := s.lastOnNode[service+"@"+ep.NodeName]; !ok || cur.NotReady || !ep.NotReady {
					s.lastOnNode[service+"@"+ep.NodeName] = ep
				}
			}
			if !ep.NotReady {
				eps = append(eps, ep)
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool {
		return eps[i].IP < eps[j].IP || (eps[i].IP == eps[j].IP && eps[i].Port < eps[j].Port)
	})
	if len(eps) == 0 {
		delete(s.merged, service)
		delete(s.picks, service)
		delete(s.slices, service)
		return
	}
	s.merged[service] = eps
	addrs := make([]string, len(eps))
	for i, ep := range eps {
		addrs[i] = net.JoinHostPort(ep.IP, strconv.Itoa(ep.Port))
	}
	if s.next[service] == nil {
		s.next[service] = &atomic.Uint64{}
	}
	s.picks[service] = &pickable{eps: eps, addrs: addrs, next: s.next[service]}
}

// Pick returns the next ready endpoint of a service, round-robin; false if it has none.
func (s *Store) Pick(service string) (Endpoint, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	eps := s.merged[service]
	if len(eps) == 0 {
		return Endpoint{}, false
	}
	n := s.next[service].Add(1) - 1
	return eps[n%uint64(len(eps))], true
}

// PickAddr is Pick with the endpoint's "ip:port", made when the endpoint was stored.
func (s *Store) PickAddr(service string) (Endpoint, string, bool) {
	s.waitSynced()
	s.mu.RLock()
	defer s.mu.RUnlock()
	pk := s.picks[service]
	if pk == nil {
		return Endpoint{}, "", false
	}
	i := (pk.next.Add(1) - 1) % uint64(len(pk.eps))
	return pk.eps[i], pk.addrs[i], true
}

// Endpoints returns a copy of a service's ready endpoints.
func (s *Store) Endpoints(service string) []Endpoint {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]Endpoint(nil), s.merged[service]...)
}

// OnNode returns the endpoint of service that runs on node, without copying the list: a
// ready one, or else the last one listed there. It is meant for node proxies, which are
// hostNetwork: their address is the node's and outlives any one pod. While their DaemonSet
// rolls, the old pod terminates and leaves the slices before its successor is ready, and
// the successor binds the same port (SO_REUSEPORT) as it starts. Seen on the cluster: 9
// calls failed in 0.8 s with no fallback; then 27 in 0.23 s (1 roll in 15) with a fallback
// that only knew nodes this proxy had looked up before, because a node proxy started a
// moment earlier had not: hence the last address is kept from the slices themselves, ready
// or not, from the first list on.
func (s *Store) OnNode(service, node string) (Endpoint, bool) {
	s.waitSynced()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ep := range s.merged[service] {
		if ep.NodeName == node {
			return ep, true
		}
	}
	last, known := s.lastOnNode[service+"@"+node]
	return last, known
}

// Count is the number of ready endpoints known, over all services (a metric).
func (s *Store) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, eps := range s.merged {
		n += len(eps)
	}
	return n
}

// HasEndpoint reports whether ip:port is a ready endpoint of any Service. It waits for the
// first list too: the inbound side of a node proxy that has just started is handed
// connections as early as its outbound side. Seen on the cluster: 2 calls in 30 DaemonSet
// rolls answered 403 "is not a known endpoint" 2.5 s into the roll, by the proxy that had
// just started on the callee's node.
func (s *Store) HasEndpoint(ip, port string) bool {
	return s.HasEndpointOn(ip, port, "")
}

// HasEndpointOn is HasEndpoint for a pod of one node ("" for any): an L4 proxy's peer port
// relays only to its own node's pods, as every sender picks the proxy by the pod's node.
func (s *Store) HasEndpointOn(ip, port, node string) bool {
	s.waitSynced()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, eps := range s.merged {
		for _, ep := range eps {
			if ep.IP == ip && strconv.Itoa(ep.Port) == port && (node == "" || ep.NodeName == node) {
				return true
			}
		}
	}
	return false
}
