package mesh

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"patternbench.local/images/internal/serve"
)

// The ambient tests stand nodes on loopback addresses: node n<i>'s L4 proxy listens on
// 127.0.0.<10+i> (the app-facing port and the peer port, the same on every node, as
// hostNetwork DaemonSet pods have), the i-th waypoint pod on 127.0.0.<20+i>. Pods are httptest
// servers on 127.0.0.1, placed on nodes by their EndpointSlice entry. One Store stands for
// what every proxy's watch would hold.

const l4Service = "agents/l4"

type ambient struct {
	t         testing.TB
	store     *Store
	outPort   int // apps' CONNECT port on every L4
	peerPort  int // HTTP/2 CONNECT port on every L4 and waypoint
	l4        map[string]*L4Proxy
	accepts   map[string]*atomic.Int64 // node -> TCP connections its peer port accepted
	waypoints int                      // waypoint pods started: the n-th listens on 127.0.0.<20+n>
}

func newAmbient(t testing.TB) *ambient {
	return &ambient{t: t, store: NewStore(), outPort: freePort(t), peerPort: freePort(t),
		l4: map[string]*L4Proxy{}, accepts: map[string]*atomic.Int64{}}
}

func nodeIP(node string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(node, "n"))
	return fmt.Sprintf("127.0.0.%d", 10+n)
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func (a *ambient) listen(addr string) net.Listener {
	ln, err := serve.Listen(addr, true)
	if err != nil {
		a.t.Skipf("cannot listen on %s: %v", addr, err)
	}
	return ln
}

// startL4 runs node's L4 proxy (both ports, SO_REUSEPORT) and returns its shutdown group.
func (a *ambient) startL4(node string, retries int) (*L4Proxy, *serve.Group) {
	l := &L4Proxy{Name: node, NodeName: node, Store: a.store, NodeProxies: l4Service, PeerPort: a.peerPort,
		Retries: retries, Timeout: 2 * time.Second, Quiet: 30 * time.Millisecond}
	l.Init()
	out := l.Outbound()
	peer := l.PeerServer()
	if a.accepts[node] == nil {
		a.accepts[node] = &atomic.Int64{}
	}
	outLn := a.listen(net.JoinHostPort(nodeIP(node), strconv.Itoa(a.outPort)))
	peerLn := countingListener{a.listen(net.JoinHostPort(nodeIP(node), strconv.Itoa(a.peerPort))), a.accepts[node]}
	go out.Serve(outLn)
	go peer.Serve(peerLn)
	g := &serve.Group{Servers: []serve.Server{peer, out}, Drain: 100 * time.Millisecond, Grace: 3 * time.Second,
		Draining: &serve.Draining{}, OnSignal: l.Drain}
	a.store.SetSlice(l4Service, "l4-"+node, []Endpoint{{IP: nodeIP(node), Port: a.peerPort, NodeName: node}})
	a.l4[node] = l
	var once sync.Once
	a.t.Cleanup(func() { once.Do(func() { g.Shutdown(); l.Close() }) })
	return l, g
}

// startWaypoint runs a waypoint pod for service key (namespace/name) on node, as pod name.
func (a *ambient) startWaypoint(key, pod, node string, retries int) *Proxy {
	p := &Proxy{Mode: Waypoint, Name: pod, NodeName: node, DefaultNamespace: strings.Split(key, "/")[0], Store: a.store,
		NodeProxies: l4Service, Service: key, PeerPort: a.peerPort, Retries: retries, Timeout: 2 * time.Second}
	p.Init()
	h, streams := p.WaypointTunnels()
	srv := NewServer(p.Waypoint())
	go srv.Serve(streams)
	a.waypoints++
	ip := fmt.Sprintf("127.0.0.%d", 20+a.waypoints)
	peer := NewPeerServer(h)
	go peer.Serve(a.listen(net.JoinHostPort(ip, strconv.Itoa(a.peerPort))))
	a.t.Cleanup(func() {
		srv.Shutdown(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		peer.Shutdown(ctx)
		p.Close()
	})
	waypointKey := key + "-waypoint"
	a.store.SetSlice(waypointKey, "wp-"+pod, []Endpoint{{IP: ip, Port: a.peerPort, NodeName: node, PodName: pod}})
	a.store.SetWaypoint(waypointKey, "wp-"+pod, key)
	return p
}

// pod starts a backend answering with its name and the Via it got, and places it on node.
func (a *ambient) pod(key, name, node string) *atomic.Int64 {
	be, hits := backend(a.t, name)
	ip, port := hostPort(a.t, be.URL)
	a.store.SetSlice(key, "s-"+name, []Endpoint{{IP: ip, Port: port, NodeName: node, PodName: name}})
	return hits
}

// tunnelDial opens a CONNECT tunnel as the app does; it returns the connection and the trail.
func tunnelDial(l4Addr, authority string) (net.Conn, string, int, error) {
	c, err := net.DialTimeout("tcp", l4Addr, 2*time.Second)
	if err != nil {
		return nil, "", 0, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		return nil, resp.Header.Get(TrailHeader), resp.StatusCode, fmt.Errorf("CONNECT: %s: %s", resp.Status, body)
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, "", 0, fmt.Errorf("bytes after the CONNECT answer")
	}
	return c, resp.Header.Get(TrailHeader), 200, nil
}

// tunnelClient is an HTTP client whose connections are CONNECT tunnels through l4Addr (the
// app with MESH_TUNNEL=connect); trails records each connection's CONNECT trail.
func tunnelClient(l4Addr string) (*http.Client, *sync.Map) {
	trails := &sync.Map{}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		c, trail, _, err := tunnelDial(l4Addr, addr)
		if err == nil {
			trails.Store(c, trail)
		}
		return c, err
	}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, trails
}

func (a *ambient) l4Addr(node string) string {
	return net.JoinHostPort(nodeIP(node), strconv.Itoa(a.outPort))
}

type answer struct {
	Name, Via string
}

func getThrough(t *testing.T, c *http.Client, url string) (answer, *http.Response) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("status %d: %v", resp.StatusCode, err)
	}
	return answer{body["name"], body["via"]}, resp
}

func TestL4SameNodeDialsThePodDirectly(t *testing.T) {
	a := newAmbient(t)
	l1, _ := a.startL4("n1", 0)
	a.pod("demo/b", "b-0", "n1")
	c, trail, _, err := tunnelDial(a.l4Addr("n1"), "b.demo:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if trail != "1.1 l4/n1 (n1)" {
		t.Fatalf("trail %q", trail)
	}
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: b.demo\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Via") != "" {
		t.Fatalf("status %d, Via %q: an L4 proxy must not touch HTTP", resp.StatusCode, resp.Header.Get("Via"))
	}
	if l1.Peers.Dials.Load() != 0 {
		t.Fatalf("a same-node call opened %d peer connections", l1.Peers.Dials.Load())
	}
}

func TestL4CrossNodeUsesOnePeerConnection(t *testing.T) {
	a := newAmbient(t)
	l1, _ := a.startL4("n1", 0)
	a.startL4("n2", 0)
	hits := a.pod("demo/b", "b-0", "n2")
	// Many tunnels, one after the other and twenty at a time: one TCP connection n1 -> n2.
	for i := 0; i < 50; i++ {
		c, trail, _, err := tunnelDial(a.l4Addr("n1"), "b.demo:80")
		if err != nil {
			t.Fatal(err)
		}
		if trail != "1.1 l4/n2 (n2), 1.1 l4/n1 (n1)" {
			t.Fatalf("trail %q", trail)
		}
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: b.demo\r\nConnection: close\r\n\r\n")
		if _, err := io.ReadAll(c); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, _ := tunnelClient(a.l4Addr("n1"))
			defer client.CloseIdleConnections()
			for i := 0; i < 20; i++ {
				resp, err := client.Get("http://b.demo/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	if hits.Load() != 50+400 {
		t.Fatalf("the pod got %d requests, want 450", hits.Load())
	}
	if got := a.accepts["n2"].Load(); got != 1 || l1.Peers.Dials.Load() != 1 {
		t.Fatalf("n2's peer port accepted %d connections, n1 dialled %d; want one", got, l1.Peers.Dials.Load())
	}
}

// An echo "pod" that is not HTTP: the bytes must come back exactly, however much they look
// like HTTP, and a half-close must pass through.
func TestL4TunnelledBytesAreUntouched(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	a.startL4("n2", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c) // until the client half-closes
				c.Close()
			}()
		}
	}()
	ip, port := hostPort(t, "http://"+ln.Addr().String())
	for _, node := range []string{"n1", "n2"} { // same node, then across the peer tunnel
		a.store.SetSlice("demo/echo", "s", []Endpoint{{IP: ip, Port: port, NodeName: node, PodName: "echo"}})
		c, _, _, err := tunnelDial(a.l4Addr("n1"), "echo.demo:80")
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte("GET http://evil.example/ HTTP/1.1\r\nHost: other\r\nVia: 1.1 forged\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc" +
			"CONNECT x:1 HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
		random := make([]byte, 1<<20)
		rand.Read(random)
		payload = append(payload, random...)
		go func() {
			c.Write(payload)
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c) // ends only if the half-close went through and back
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("%s: %d bytes came back, %d sent, equal=%v", node, len(got), len(payload), bytes.Equal(got, payload))
		}
	}
}

func TestL4PeerIsNotAnOpenRelay(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	l2, _ := a.startL4("n2", 0)
	_, err := l2.Peers.Open(net.JoinHostPort(nodeIP("n1"), strconv.Itoa(a.peerPort)), "127.0.0.1:22", "", time.Second)
	oe, ok := err.(*OpenError)
	if !ok || oe.Status != http.StatusForbidden || oe.Trail != "1.1 l4/n1 (n1)" {
		t.Fatalf("a stream to an unknown address: %v", err)
	}
	// A ready pod of another node: n1's peer port relays to n1's pods only.
	hits := a.pod("demo/b", "b-0", "n2")
	ip, port := hostPort(t, "http://"+a.store.Endpoints("demo/b")[0].IP+":"+strconv.Itoa(a.store.Endpoints("demo/b")[0].Port))
	_, err = l2.Peers.Open(net.JoinHostPort(nodeIP("n1"), strconv.Itoa(a.peerPort)), net.JoinHostPort(ip, strconv.Itoa(port)), "", time.Second)
	if oe, ok := err.(*OpenError); !ok || oe.Status != http.StatusForbidden || hits.Load() != 0 {
		t.Fatalf("a stream through n1 to n2's pod: %v (hits %d)", err, hits.Load())
	}
}

func TestL4UnknownServiceAnswers503WithItsTrail(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	_, trail, status, err := tunnelDial(a.l4Addr("n1"), "nothing.demo:80")
	if err == nil || status != http.StatusServiceUnavailable || trail != "1.1 l4/n1 (n1)" {
		t.Fatalf("status %d trail %q err %v", status, trail, err)
	}
	c, err := net.Dial("tcp", a.l4Addr("n1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET http://b.demo/ HTTP/1.1\r\nHost: b.demo\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("a forward-proxy request to the L4 proxy: %v %v", resp, err)
	}
}

func TestWaypointCarriesL7AndTheTrailShowsEveryHop(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	a.startL4("n2", 0)
	a.startL4("n3", 0)
	hits0 := a.pod("demo/b", "b-0", "n2")
	hits1 := a.pod("demo/b", "b-1", "n1")
	a.startWaypoint("demo/b", "b-wp-0", "n3", 0)
	client, trails := tunnelClient(a.l4Addr("n1"))
	var conn net.Conn
	names := map[string]int{}
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", "http://b.demo/", nil)
		req = req.WithContext(withGotConn(req.Context(), &conn))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		names[body["name"]]++
		connectTrail, _ := trails.Load(conn)
		if connectTrail != "1.1 waypoint/b-wp-0 (n3), 1.1 l4/n1 (n1)" {
			t.Fatalf("CONNECT trail %q", connectTrail)
		}
		wantDst := map[string]string{"b-0": "1.1 l4/n2 (n2)", "b-1": "1.1 l4/n1 (n1)"}[body["name"]]
		if got := resp.Header.Get(TrailHeader); got != wantDst {
			t.Fatalf("the waypoint's answer trail %q, want %q (pod %s)", got, wantDst, body["name"])
		}
		if resp.Header.Get("Via") != "1.1 waypoint/b-wp-0 (n3)" || body["via"] != "1.1 waypoint/b-wp-0 (n3)" {
			t.Fatalf("Via on the answer %q, at the pod %q", resp.Header.Get("Via"), body["via"])
		}
	}
	// One tunnel from the app, balanced per request by the waypoint (L7).
	if names["b-0"] != 5 || names["b-1"] != 5 || hits0.Load() != 5 || hits1.Load() != 5 {
		t.Fatalf("requests per pod %v", names)
	}
}

func withGotConn(ctx context.Context, conn *net.Conn) context.Context {
	return httptraceWithGotConn(ctx, func(c net.Conn) { *conn = c })
}

func TestWaypointRetriesOnlyWhenEnabled(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	a.startL4("n2", 0)
	be, _ := backend(t, "b-0")
	ip, port := hostPort(t, be.URL)
	dead := freePort(t)
	a.store.SetSlice("demo/b", "s", []Endpoint{{IP: "127.0.0.1", Port: dead, NodeName: "n2", PodName: "b-dead"}, {IP: ip, Port: port, NodeName: "n2", PodName: "b-0"}})
	for _, retries := range []int{0, 1} {
		key := fmt.Sprintf("demo/b%d", retries)
		a.store.SetSlice(key, "s", a.store.Endpoints("demo/b"))
		a.startWaypoint(key, fmt.Sprintf("wp-%d", retries), "n2", retries)
		client, _ := tunnelClient(a.l4Addr("n1"))
		failures := 0
		for i := 0; i < 10; i++ {
			resp, err := client.Get(fmt.Sprintf("http://b%d.demo/", retries))
			if err != nil || resp.StatusCode != 200 {
				failures++
			}
			if resp != nil {
				if retries == 0 && resp.StatusCode == http.StatusBadGateway && !strings.HasPrefix(resp.Header.Get("Via"), "1.1 waypoint/") {
					t.Errorf("the waypoint's 502 has no Via: %q", resp.Header.Get("Via"))
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
		if retries == 0 && failures == 0 {
			t.Error("without retries, requests to a dead endpoint must fail")
		}
		if retries == 1 && failures != 0 {
			t.Errorf("with retries, %d requests failed", failures)
		}
	}
}

func TestWaypointRefusesAnotherServicesStream(t *testing.T) {
	a := newAmbient(t)
	l1, _ := a.startL4("n1", 0)
	a.startWaypoint("demo/b", "b-wp-0", "n2", 0)
	_, err := l1.Peers.Open(net.JoinHostPort("127.0.0.21", strconv.Itoa(a.peerPort)), "c.demo:80", l1.Entry(), time.Second)
	if oe, ok := err.(*OpenError); !ok || oe.Status != http.StatusForbidden {
		t.Fatalf("a stream for another service: %v", err)
	}
}

func TestWaypointWithNoReadyPodIsNotBypassed(t *testing.T) {
	a := newAmbient(t)
	a.startL4("n1", 0)
	a.pod("demo/b", "b-0", "n1")
	a.store.SetWaypoint("demo/b-waypoint", "wp-1", "demo/b") // a waypoint Service, no ready pod
	_, _, status, err := tunnelDial(a.l4Addr("n1"), "b.demo:80")
	if status != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "waypoint") {
		t.Fatalf("status %d: %v", status, err)
	}
}

func TestWaypointIndexFollowsSlices(t *testing.T) {
	raw := `{"metadata":{"name":"wp-abc","namespace":"demo","labels":{"kubernetes.io/service-name":"orders-waypoint","patternbench.dev/waypoint-for":"orders"}},
	"endpoints":[{"addresses":["10.0.0.9"],"nodeName":"n3"}],"ports":[{"port":15008}]}`
	var o sliceObject
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		t.Fatal(err)
	}
	if o.waypointFor() != "demo/orders" {
		t.Fatalf("waypointFor %q", o.waypointFor())
	}
	s := NewStore()
	s.SetSlice(o.serviceKey(), o.Metadata.Name, o.endpoints())
	s.SetWaypoint(o.serviceKey(), o.Metadata.Name, o.waypointFor())
	if wp, ok := s.WaypointOf("demo/orders"); !ok || wp != "demo/orders-waypoint" {
		t.Fatalf("WaypointOf = %q %v", wp, ok)
	}
	s.SetSlice(o.serviceKey(), o.Metadata.Name, nil) // no ready pod: still the waypoint
	if _, ok := s.WaypointOf("demo/orders"); !ok {
		t.Fatal("a waypoint without ready pods was forgotten")
	}
	s.DeleteSlice(o.serviceKey(), o.Metadata.Name)
	if _, ok := s.WaypointOf("demo/orders"); ok {
		t.Fatal("a deleted waypoint slice still routes")
	}
	s.ReplaceWaypoints(map[string]map[string]string{"demo/w": {"x": "demo/orders"}})
	if wp, _ := s.WaypointOf("demo/orders"); wp != "demo/w" {
		t.Fatalf("after a re-list: %q", wp)
	}
}

// An L4 proxy upgraded in place: the successor binds beside it (SO_REUSEPORT), the old one
// drains. Calls keep flowing from n1's apps to a pod on n2 over kept-alive tunnels while
// first n2's proxy (the far end of the peer connection), then n1's (the apps' end) hands
// over; none fails, and the successors carry the tunnels afterwards.
func TestL4HandoverLosesNoStream(t *testing.T) {
	a := newAmbient(t)
	firstN1, oldN1 := a.startL4("n1", 0)
	_, oldN2 := a.startL4("n2", 0)
	a.pod("demo/b", "b-0", "n2")
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var errs sync.Map
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, _ := tunnelClient(a.l4Addr("n1"))
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://b.demo/")
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
					errs.Store(fmt.Sprint(err, resp != nil && resp.StatusCode != 200), true)
				} else {
					ok.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	handover := func(node string, old *serve.Group) *L4Proxy {
		time.Sleep(150 * time.Millisecond)
		successor, _ := a.startL4(node, 0) // binds while the old one listens
		if err := old.Shutdown(); err != nil {
			t.Errorf("old %s proxy: %v", node, err)
		}
		return successor
	}
	newN2 := handover("n2", oldN2)
	// The next call after the old proxy's exit dials the successor; on a loaded machine the
	// callers may not have run yet when Shutdown returns (CI saw 1 dial at that instant).
	waitFrom := time.Now()
	deadline := waitFrom.Add(3 * time.Second)
	for firstN1.Peers.Dials.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := firstN1.Peers.Dials.Load(); d < 2 {
		t.Errorf("n1 dialled n2 %d times in 3 s: the old n2 proxy's GOAWAY should have moved it to the successor", d)
	}
	t.Logf("n1 dialled the successor %v after the old n2 proxy's exit", time.Since(waitFrom))
	newN1 := handover("n1", oldN1)
	time.Sleep(150 * time.Millisecond)
	okBefore := ok.Load()
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		var list []string
		errs.Range(func(k, _ any) bool { list = append(list, k.(string)); return true })
		t.Fatalf("handover: ok=%d failed=%d: %v", ok.Load(), failed.Load(), list)
	}
	if ok.Load() == okBefore {
		t.Fatal("no call went through after both handovers")
	}
	if newN1.Metrics.dir("tunnel").requests.Load() == 0 || newN2.Metrics.dir("peer").requests.Load() == 0 {
		t.Fatalf("the successors took no tunnel: n1 %d, n2 %d", newN1.Metrics.dir("tunnel").requests.Load(), newN2.Metrics.dir("peer").requests.Load())
	}
}

func httptraceWithGotConn(ctx context.Context, f func(net.Conn)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { f(info.Conn) }})
}

// Sequential calls on kept-alive connections from an app on n1 to a pod on n2: node mode
// (HTTP proxies on both nodes), L4 (CONNECT, one HTTP/2 peer connection), L4 + waypoint.
// Wall time per call on a shared machine is a rough guide only; `make bench` is the measure.
func BenchmarkCrossNodeCall(b *testing.B) {
	for _, kind := range []string{"node", "l4", "l4+waypoint"} {
		b.Run(kind, func(b *testing.B) {
			a := newAmbient(b)
			var client *http.Client
			switch kind {
			case "node":
				inPort := freePort(b)
				for _, node := range []string{"n1", "n2"} {
					p := &Proxy{Mode: Node, Name: node, Store: a.store, NodeProxies: "agents/meshproxy", InboundPort: inPort}
					p.Init()
					ln, err := net.Listen("tcp", net.JoinHostPort(nodeIP(node), strconv.Itoa(inPort)))
					if err != nil {
						b.Skip(err)
					}
					srv := NewServer(p.Inbound())
					go srv.Serve(ln)
					b.Cleanup(func() { srv.Shutdown(context.Background()) })
					a.store.SetSlice("agents/meshproxy", "mp-"+node, []Endpoint{{IP: nodeIP(node), Port: inPort, NodeName: node}})
					if node == "n1" {
						out, err := net.Listen("tcp", "127.0.0.1:0")
						if err != nil {
							b.Fatal(err)
						}
						osrv := NewServer(p.Outbound())
						go osrv.Serve(out)
						b.Cleanup(func() { osrv.Shutdown(context.Background()) })
						client = proxyClient(out.Addr().String())
					}
				}
			default:
				a.startL4("n1", 0)
				a.startL4("n2", 0)
				if kind == "l4+waypoint" {
					a.startWaypoint("demo/b", "b-wp-0", "n2", 0)
				}
				client, _ = tunnelClient(a.l4Addr("n1"))
			}
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
			b.Cleanup(be.Close)
			ip, port := hostPort(b, be.URL)
			a.store.SetSlice("demo/b", "s-b", []Endpoint{{IP: ip, Port: port, NodeName: "n2", PodName: "b-0"}})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Get("http://b.demo/")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
