package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"patternbench.local/images/internal/applog"
	"patternbench.local/images/internal/chainrpc"
	"patternbench.local/images/internal/cmdtest"
	"patternbench.local/images/internal/mesh"
	"patternbench.local/images/internal/serve"
)

func TestBadTunnelConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "MESH_TUNNEL", "SERVICE_NAME=a", "MESH_TUNNEL=udp")
	cmdtest.ExpectOneLineNaming(t, "MESH_PROXY", "SERVICE_NAME=a", "MESH_TUNNEL=connect")
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// listen binds addr or skips (the 127.0.0.x addresses that stand for nodes).
func listen(t *testing.T, addr string) net.Listener {
	ln, err := serve.Listen(addr, false)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// The app on node n1 calls b (a pod on n2) and c (a pod on n2 behind a waypoint on n3)
// through its node's L4 proxy: each downstream records its Via and, in "tunnel", every
// proxy of the call, callee side first.
// l4Nodes runs the node L4 proxies of n1 (127.0.0.11) and n2 (127.0.0.12); the apps'
// outbound port and the peer port.
func l4Nodes(t *testing.T, store *mesh.Store) (outPort, peerPort int) {
	peerPort = freePort(t)
	outPort = freePort(t)
	for i, node := range []string{"n1", "n2"} {
		ip := fmt.Sprintf("127.0.0.%d", 11+i)
		l4 := &mesh.L4Proxy{Name: node, NodeName: node, Store: store, NodeProxies: "agents/l4", PeerPort: peerPort}
		l4.Init()
		out, peer := l4.Outbound(), l4.PeerServer()
		go out.Serve(listen(t, net.JoinHostPort(ip, strconv.Itoa(outPort))))
		go peer.Serve(listen(t, net.JoinHostPort(ip, strconv.Itoa(peerPort))))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			peer.Shutdown(ctx)
			out.Shutdown(ctx)
			l4.Close()
		})
		store.SetSlice("agents/l4", node, []mesh.Endpoint{{IP: ip, Port: peerPort, NodeName: node}})
	}
	return outPort, peerPort
}

func TestCallsThroughTheL4ProxyRecordTheirTrail(t *testing.T) {
	store := mesh.NewStore()
	outPort, peerPort := l4Nodes(t, store)
	for _, svc := range []string{"b", "c"} {
		pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(Answer{Service: svc, Pod: svc + "-0", Node: "n2", Via: r.Header.Get("Via")})
		}))
		t.Cleanup(pod.Close)
		u, _ := url.Parse(pod.URL)
		port, _ := strconv.Atoi(u.Port())
		store.SetSlice("demo/"+svc, svc, []mesh.Endpoint{{IP: u.Hostname(), Port: port, NodeName: "n2", PodName: svc + "-0"}})
	}
	wp := &mesh.Proxy{Mode: mesh.Waypoint, Name: "c-wp-0", NodeName: "n3", DefaultNamespace: "demo", Store: store,
		NodeProxies: "agents/l4", Service: "demo/c", PeerPort: peerPort}
	wp.Init()
	tunnels, streams := wp.WaypointTunnels()
	wpServer := mesh.NewServer(wp.Waypoint())
	go wpServer.Serve(streams)
	wpPeer := mesh.NewPeerServer(tunnels)
	go wpPeer.Serve(listen(t, net.JoinHostPort("127.0.0.21", strconv.Itoa(peerPort))))
	t.Cleanup(func() {
		wpServer.Shutdown(context.Background())
		wpPeer.Close()
		wp.Close()
	})
	store.SetSlice("demo/c-waypoint", "wp", []mesh.Endpoint{{IP: "127.0.0.21", Port: peerPort, NodeName: "n3", PodName: "c-wp-0"}})
	store.SetWaypoint("demo/c-waypoint", "wp", "demo/c")

	s := settings{Service: "a", Pod: "a-0", Node: "n1", Namespace: "demo", Downstreams: []string{"b", "c", "nothing"},
		Proxy: net.JoinHostPort("127.0.0.11", strconv.Itoa(outPort)), Tunnel: "connect", Timeout: 5 * time.Second}
	a := &app{s: s, log: applog.NewWriter(&discard{}, "a-0", ""), client: &http.Client{Transport: newTransport(s)}}
	for round := 0; round < 2; round++ { // the second round reuses the tunnels
		rec := httptest.NewRecorder()
		a.root(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		var ans Answer
		if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
			t.Fatal(err)
		}
		b, c, nothing := ans.Downstream[0], ans.Downstream[1], ans.Downstream[2]
		if b.Status != 200 || b.Via != "" || b.Tunnel != "1.1 l4/n2 (n2), 1.1 l4/n1 (n1)" {
			t.Fatalf("round %d, b: %+v", round, b)
		}
		if c.Status != 200 || c.Via != "1.1 waypoint/c-wp-0 (n3)" || c.Answer == nil || c.Answer.Via != "1.1 waypoint/c-wp-0 (n3)" ||
			c.Tunnel != "1.1 l4/n2 (n2), 1.1 waypoint/c-wp-0 (n3), 1.1 l4/n1 (n1)" {
			t.Fatalf("round %d, c: %+v", round, c)
		}
		if nothing.Status != http.StatusServiceUnavailable || nothing.Tunnel != "1.1 l4/n1 (n1)" || nothing.Error == "" {
			t.Fatalf("round %d, an unknown service: %+v", round, nothing)
		}
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// A gRPC call through the node L4 proxy (ambient-l4) records the tunnel's trail too (the
// L4 proxies write no Via) and the connection it took.
func TestGRPCCallsThroughTheL4ProxyRecordTheirTrail(t *testing.T) {
	store := mesh.NewStore()
	outPort, _ := l4Nodes(t, store)
	b, _ := serveApp(t, "b")
	host, port, _ := net.SplitHostPort(b)
	p, _ := strconv.Atoi(port)
	store.SetSlice("demo/b", "b", []mesh.Endpoint{{IP: host, Port: p, NodeName: "n2", PodName: "b-0"}})
	s := settings{Service: "a", Pod: "a-0", Node: "n1", Namespace: "demo", Downstreams: []string{"b"},
		Proxy: net.JoinHostPort("127.0.0.11", strconv.Itoa(outPort)), Tunnel: "connect", Timeout: 5 * time.Second}
	a := &app{s: s, log: applog.NewWriter(&discard{}, "a-0", ""), client: &http.Client{Transport: newTransport(s)}}
	out, err := a.grpcCall(context.Background(), &chainrpc.CallRequest{RequestID: "r"})
	if err != nil {
		t.Fatal(err)
	}
	d := out.(*Answer).Downstream[0]
	if d.Status != 200 || d.Tunnel != "1.1 l4/n2 (n2), 1.1 l4/n1 (n1)" || d.Conn != "a-0#1" || d.Answer == nil || d.Answer.Service != "b" {
		t.Fatalf("%+v", d)
	}
}
