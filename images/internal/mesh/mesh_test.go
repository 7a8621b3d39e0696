package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"patternbench.local/images/internal/serve"
)

func TestParseHost(t *testing.T) {
	cases := []struct {
		host, ns string
		want     Destination
		err      bool
	}{
		{"svc-b", "demo", Destination{"svc-b", "demo", ""}, false},
		{"svc-b:80", "demo", Destination{"svc-b", "demo", "80"}, false},
		{"svc-b.other", "demo", Destination{"svc-b", "other", ""}, false},
		{"svc-b.other.svc", "", Destination{"svc-b", "other", ""}, false},
		{"svc-b.other.svc.cluster.local.", "", Destination{"svc-b", "other", ""}, false},
		{"SVC-B.Other:8080", "", Destination{"svc-b", "other", "8080"}, false},
		{"svc-b", "", Destination{}, true},
		{"10.0.0.1:80", "demo", Destination{}, true},
		{"example.com.evil.org", "demo", Destination{}, true},
		{"a..b", "demo", Destination{}, true},
		{"", "demo", Destination{}, true},
	}
	for _, c := range cases {
		got, err := ParseHost(c.host, c.ns)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseHost(%q, %q) = %+v, %v; want %+v, err=%v", c.host, c.ns, got, err, c.want, c.err)
		}
	}
}

func TestRoundRobinOverReadyEndpoints(t *testing.T) {
	s := NewStore()
	s.SetSlice("ns/a", "a-1", []Endpoint{{IP: "10.0.0.2", Port: 80}, {IP: "10.0.0.1", Port: 80}})
	s.SetSlice("ns/a", "a-2", []Endpoint{{IP: "10.0.0.3", Port: 80}})
	counts := map[string]int{}
	for i := 0; i < 300; i++ {
		ep, ok := s.Pick("ns/a")
		if !ok {
			t.Fatal("no endpoint")
		}
		counts[ep.IP]++
	}
	if len(counts) != 3 || counts["10.0.0.1"] != 100 || counts["10.0.0.2"] != 100 || counts["10.0.0.3"] != 100 {
		t.Fatalf("round-robin is uneven: %v", counts)
	}
	s.DeleteSlice("ns/a", "a-2")
	for i := 0; i < 10; i++ {
		if ep, _ := s.Pick("ns/a"); ep.IP == "10.0.0.3" {
			t.Fatal("picked an endpoint of a deleted slice")
		}
	}
	s.DeleteSlice("ns/a", "a-1")
	if _, ok := s.Pick("ns/a"); ok {
		t.Fatal("picked from a service with no endpoints")
	}
}

func TestSliceReadinessAndPorts(t *testing.T) {
	raw := `{"metadata":{"name":"s1","namespace":"ns","labels":{"kubernetes.io/service-name":"web"}},
	"addressType":"IPv4",
	"endpoints":[
	  {"addresses":["10.0.0.1"],"conditions":{"ready":true},"nodeName":"n1","targetRef":{"kind":"Pod","name":"web-1"}},
	  {"addresses":["10.0.0.2"],"conditions":{"ready":false},"nodeName":"n1"},
	  {"addresses":["10.0.0.3"],"conditions":{},"nodeName":"n2"}],
	"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"http","port":15006,"protocol":"TCP"}]}`
	var o sliceObject
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		t.Fatal(err)
	}
	if o.serviceKey() != "ns/web" {
		t.Fatalf("key %q", o.serviceKey())
	}
	eps := o.endpoints()
	if len(eps) != 3 || eps[0] != (Endpoint{IP: "10.0.0.1", Port: 15006, NodeName: "n1", PodName: "web-1"}) ||
		!eps[1].NotReady || eps[1].IP != "10.0.0.2" || eps[2].NotReady || eps[2].IP != "10.0.0.3" {
		t.Fatalf("endpoints: %+v", eps)
	}
	s := NewStore()
	s.SetSlice(o.serviceKey(), o.Metadata.Name, eps)
	if got := s.Endpoints("ns/web"); len(got) != 2 || got[0].IP != "10.0.0.1" || got[1].IP != "10.0.0.3" {
		t.Fatalf("only ready endpoints are picked from, got %+v", got)
	}
}

// backend is an app stand-in that answers with the Via it received and its own name.
func backend(t testing.TB, name string) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": name, "via": r.Header.Get("Via"), "request_id": r.Header.Get("X-Request-Id")})
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func hostPort(t testing.TB, rawURL string) (string, int) {
	u, _ := url.Parse(rawURL)
	h, p, _ := net.SplitHostPort(u.Host)
	n, _ := strconv.Atoi(p)
	return h, n
}

// serveHandler serves a proxy handler the way meshproxy does, on a free loopback port.
func serveHandler(t *testing.T, h Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

func proxyClient(proxyAddr string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr})}}
}

// sidecarChain: client -> A's outbound sidecar -> B's inbound sidecar -> backend B.
func sidecarChain(t *testing.T, store *Store, backendURL string) (outbound string) {
	inboundB := &Proxy{Mode: Sidecar, Name: "b-pod", NodeName: "n2", DefaultNamespace: "demo", Store: store, AppAddr: strings.TrimPrefix(backendURL, "http://")}
	inboundB.Init()
	inAddr := serveHandler(t, inboundB.Inbound())
	ip, port := hostPort(t, "http://"+inAddr)
	store.SetSlice("demo/b", "b-1", []Endpoint{{IP: ip, Port: port, NodeName: "n1", PodName: "b-pod"}})
	outboundA := &Proxy{Mode: Sidecar, Name: "a-pod", NodeName: "n1", DefaultNamespace: "demo", Store: store}
	outboundA.Init()
	return serveHandler(t, outboundA.Outbound())
}

func TestViaTrailOnRequestAndResponse(t *testing.T) {
	store := NewStore()
	be, _ := backend(t, "b")
	out := sidecarChain(t, store, be.URL)
	req, _ := http.NewRequest("GET", "http://b.demo/", nil)
	req.Header.Set("X-Request-Id", "r-1")
	resp, err := proxyClient(out).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body["via"] != "1.1 sidecar/a-pod (n1), 1.1 sidecar/b-pod (n2)" {
		t.Errorf("request Via at the app = %q", body["via"])
	}
	if got := resp.Header.Get("Via"); got != "1.1 sidecar/b-pod (n2), 1.1 sidecar/a-pod (n1)" {
		t.Errorf("response Via at the client = %q", got)
	}
	if body["request_id"] != "r-1" {
		t.Errorf("X-Request-Id not propagated: %q", body["request_id"])
	}
}

func TestOriginFormAndUnknownServiceAreRefused(t *testing.T) {
	store := NewStore()
	p := &Proxy{Mode: Sidecar, Name: "a", DefaultNamespace: "demo", Store: store}
	p.Init()
	addr := serveHandler(t, p.Outbound())
	resp, err := http.Get("http://" + addr + "/not-absolute")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("origin-form request: %d, want 400", resp.StatusCode)
	}
	resp, err = proxyClient(addr).Get("http://nothing.demo/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Via") != "1.1 sidecar/a" {
		t.Errorf("unknown service: %d via %q", resp.StatusCode, resp.Header.Get("Via"))
	}
}

func TestNodeModeRoutesThroughTheDestinationNodesProxy(t *testing.T) {
	store := NewStore()
	be, hits := backend(t, "b")
	beIP, bePort := hostPort(t, be.URL)
	// Two node proxies, n1 and n2, each with its inbound side; the pod runs on n2.
	proxies := map[string]*Proxy{}
	var n2Inbound string
	for _, node := range []string{"n1", "n2"} {
		p := &Proxy{Mode: Node, Name: node, Store: store, NodeProxies: "agents/meshproxy"}
		proxies[node] = p
	}
	// Both node proxies must share one inbound port, as hostNetwork DaemonSet pods do: give
	// each its own loopback address.
	inboundPort := freePort(t)
	for i, node := range []string{"n1", "n2"} {
		p := proxies[node]
		p.InboundPort = inboundPort
		p.Init()
		ip := fmt.Sprintf("127.0.0.%d", 10+i)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(inboundPort)))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", ip, err)
		}
		srv := NewServer(p.Inbound())
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		store.SetSlice("agents/meshproxy", "mp-"+node, []Endpoint{{IP: ip, Port: inboundPort, NodeName: node}})
		if node == "n2" {
			n2Inbound = ip
		}
	}
	store.SetSlice("demo/b", "b-1", []Endpoint{{IP: beIP, Port: bePort, NodeName: "n2", PodName: "b-pod"}})
	out := serveHandler(t, proxies["n1"].Outbound())
	resp, err := proxyClient(out).Get("http://b.demo/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if body["via"] != "1.1 node/n1, 1.1 node/n2" || resp.Header.Get("Via") != "1.1 node/n2, 1.1 node/n1" {
		t.Fatalf("via request=%q response=%q (n2 inbound %s)", body["via"], resp.Header.Get("Via"), n2Inbound)
	}
	if hits.Load() != 1 {
		t.Fatalf("backend hits %d", hits.Load())
	}
}

func TestNodeInboundIsNotAnOpenRelay(t *testing.T) {
	store := NewStore()
	p := &Proxy{Mode: Node, Name: "n1", Store: store, NodeProxies: "agents/meshproxy"}
	p.Init()
	addr := serveHandler(t, p.Inbound())
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Header.Set(DestinationHeader, "127.0.0.1:22")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("relay to an unknown address: %d, want 403", resp.StatusCode)
	}
}

func TestEndpointChangesWhileRequestsFlow(t *testing.T) {
	store := NewStore()
	beA, hitsA := backend(t, "a")
	beB, hitsB := backend(t, "b")
	ipA, portA := hostPort(t, beA.URL)
	ipB, portB := hostPort(t, beB.URL)
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ipA, Port: portA}})
	p := &Proxy{Mode: Sidecar, Name: "x", DefaultNamespace: "demo", Store: store}
	p.Init()
	out := serveHandler(t, p.Outbound())
	client := proxyClient(out)
	var failures atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://web/")
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ipA, Port: portA}, {IP: ipB, Port: portB}}) // scale up
	time.Sleep(100 * time.Millisecond)
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ipB, Port: portB}}) // A leaves (still serving)
	before := hitsA.Load()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d requests failed while endpoints changed", failures.Load())
	}
	if hitsB.Load() == 0 {
		t.Error("the new endpoint never got traffic")
	}
	if after := hitsA.Load(); after > before+4 {
		t.Errorf("the removed endpoint kept getting traffic: %d -> %d", before, after)
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// load sends requests on new connections until stop, counting failures by kind.
func load(t *testing.T, addr string, stop <-chan struct{}, workers int) (ok, refused, failed *atomic.Int64, done *sync.WaitGroup) {
	ok, refused, failed = &atomic.Int64{}, &atomic.Int64{}, &atomic.Int64{}
	done = &sync.WaitGroup{}
	for w := 0; w < workers; w++ {
		done.Add(1)
		go func() {
			defer done.Done()
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr}), MaxIdleConnsPerHost: 1}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://web/")
				switch {
				case err != nil && strings.Contains(err.Error(), "refused"):
					refused.Add(1)
				case err != nil || resp.StatusCode != 200:
					failed.Add(1)
				default:
					ok.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	return
}

func startProxyGroup(t *testing.T, store *Store, addr string, reuse bool, drain time.Duration) *serve.Group {
	p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store}
	p.Init()
	ln, err := serve.Listen(addr, reuse)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(p.Outbound())
	g := &serve.Group{Servers: []serve.Server{srv}, Drain: drain, Grace: 5 * time.Second, Draining: &serve.Draining{}}
	go srv.Serve(ln)
	return g
}

func TestGracefulDrainFailsNoRequest(t *testing.T) {
	store := NewStore()
	be, _ := backend(t, "b")
	ip, port := hostPort(t, be.URL)
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ip, Port: port}})
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := startProxyGroup(t, store, addr, false, 300*time.Millisecond)
	stop := make(chan struct{})
	ok, refused, failed, done := load(t, addr, stop, 4)
	time.Sleep(150 * time.Millisecond)
	shutdownDone := make(chan error)
	go func() { shutdownDone <- g.Shutdown() }()
	time.Sleep(200 * time.Millisecond) // requests keep flowing during the drain period
	close(stop)
	done.Wait()
	if err := <-shutdownDone; err != nil {
		t.Fatal(err)
	}
	if failed.Load() != 0 || refused.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during drain: ok=%d failed=%d refused=%d", ok.Load(), failed.Load(), refused.Load())
	}
}

func TestReusePortHandoverRefusesNoConnection(t *testing.T) {
	store := NewStore()
	be, _ := backend(t, "b")
	ip, port := hostPort(t, be.URL)
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ip, Port: port}})
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	old := startProxyGroup(t, store, addr, true, 200*time.Millisecond)
	stop := make(chan struct{})
	ok, refused, failed, done := load(t, addr, stop, 4)
	time.Sleep(100 * time.Millisecond)
	successor := startProxyGroup(t, store, addr, true, 0) // binds while the old one listens
	if err := old.Shutdown(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // only the successor serves now
	close(stop)
	done.Wait()
	successor.Shutdown()
	if refused.Load() != 0 || failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("handover: ok=%d refused=%d failed=%d", ok.Load(), refused.Load(), failed.Load())
	}
	// Without SO_REUSEPORT the successor cannot even bind while the old one listens.
	plainAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	plain := startProxyGroup(t, store, plainAddr, false, 0)
	defer plain.Shutdown()
	if _, err := serve.Listen(plainAddr, false); err == nil {
		t.Fatal("a second plain listener bound the same port")
	}
}

func TestRetriesOnlyWhenEnabled(t *testing.T) {
	store := NewStore()
	be, _ := backend(t, "b")
	ip, port := hostPort(t, be.URL)
	dead := freePort(t) // nothing listens there: connection refused
	store.SetSlice("demo/web", "s", []Endpoint{{IP: "127.0.0.1", Port: dead}, {IP: ip, Port: port}})
	for _, retries := range []int{0, 1} {
		p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store, Retries: retries}
		p.Init()
		client := proxyClient(serveHandler(t, p.Outbound()))
		failures := 0
		for i := 0; i < 10; i++ {
			resp, err := client.Get("http://web/")
			if err != nil || resp.StatusCode != 200 {
				failures++
			}
			if resp != nil {
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

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.Observe("outbound", 3*time.Millisecond, false)
	m.Observe("outbound", 2*time.Second, true)
	var b strings.Builder
	m.Write(&b, 7)
	text := b.String()
	for _, want := range []string{
		`meshproxy_requests_total{direction="outbound"} 2`,
		`meshproxy_errors_total{direction="outbound"} 1`,
		`meshproxy_request_duration_seconds_bucket{direction="outbound",le="0.005"} 1`,
		`meshproxy_request_duration_seconds_bucket{direction="outbound",le="+Inf"} 2`,
		`meshproxy_endpoints 7`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	_ = context.Background()
}

func TestInboundPassesOnADrainingAppsConnectionClose(t *testing.T) {
	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // what net/http sends once keep-alives are off
		w.WriteHeader(http.StatusOK)
	}))
	defer draining.Close()
	p := &Proxy{Mode: Sidecar, Name: "pod", DefaultNamespace: "demo", Store: NewStore(), AppAddr: strings.TrimPrefix(draining.URL, "http://")}
	p.Init()
	addr := serveHandler(t, p.Inbound())
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Fatal("the inbound proxy kept the client's connection alive while the app drains")
	}
	healthy, _ := backend(t, "ok")
	q := &Proxy{Mode: Sidecar, Name: "pod", DefaultNamespace: "demo", Store: NewStore(), AppAddr: strings.TrimPrefix(healthy.URL, "http://")}
	q.Init()
	resp, err = http.Get("http://" + serveHandler(t, q.Inbound()) + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Close {
		t.Fatal("a healthy app's connection was closed")
	}
}

func TestSlowUpstreamTimesOutWith504(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Second)
	}))
	defer slow.Close()
	ip, port := hostPort(t, slow.URL)
	store := NewStore()
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ip, Port: port}})
	p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store, Timeout: 100 * time.Millisecond}
	p.Init()
	start := time.Now()
	resp, err := proxyClient(serveHandler(t, p.Outbound())).Get("http://web/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Via") != "1.1 sidecar/p" {
		t.Fatalf("slow upstream: %d via %q, want 504 with Via", resp.StatusCode, resp.Header.Get("Via"))
	}
	if waited := time.Since(start); waited > 800*time.Millisecond {
		t.Fatalf("the timeout took %v", waited)
	}
}

func TestClientConnectionCloseIsHonouredAndHopByHopHeadersDropped(t *testing.T) {
	var seen http.Header
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusOK)
	}))
	defer be.Close()
	ip, port := hostPort(t, be.URL)
	store := NewStore()
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ip, Port: port}})
	p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store}
	p.Init()
	conn, err := net.Dial("tcp", serveHandler(t, p.Outbound()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET http://web/ HTTP/1.1\r\nHost: web\r\nProxy-Connection: keep-alive\r\nX-Secret: 1\r\nConnection: close, X-Secret\r\n\r\n")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	raw, err := io.ReadAll(conn) // the proxy closes the connection after the answer
	if err != nil {
		t.Fatalf("reading until the proxy closed: %v", err)
	}
	text := string(raw)
	if !strings.HasPrefix(text, "HTTP/1.1 200") || !strings.Contains(strings.ToLower(text), "connection: close") ||
		strings.Contains(strings.ToLower(text), "keep-alive: timeout") {
		t.Fatalf("answer:\n%s", text)
	}
	if seen.Get("X-Secret") != "" || seen.Get("Proxy-Connection") != "" || seen.Get("Via") != "1.1 sidecar/p" {
		t.Fatalf("the app saw %v", seen)
	}
}
