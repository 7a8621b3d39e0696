package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// h2Backend is an app stand-in speaking HTTP/2 cleartext: GET /stream sends `n` lines, one
// per `next` receive (flushed each), then a trailer; anything else answers its Via.
func h2Backend(t *testing.T, next <-chan struct{}, n int) string {
	addr, _ := h2BackendServer(t, next, n)
	return addr
}

func h2BackendServer(t *testing.T, next <-chan struct{}, n int) (string, *http.Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: h2Only(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			w.Header().Set("X-Seen-Via", r.Header.Get("Via"))
			fmt.Fprintf(w, "proto %s", r.Proto)
			return
		}
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // the headers first, as a gRPC server sends them
		for i := 0; i < n; i++ {
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "message %d\n", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// frameLog records the types of the HTTP/2 frames a client reads (9-byte headers followed
// through the byte stream), so a test sees the server's GOAWAY.
type frameLog struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	skip    int
	types   []byte
}

func (c *frameLog) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	data := b[:n]
	for len(data) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(data))
			c.skip -= k
			data = data[k:]
			continue
		}
		need := 9 - len(c.pending)
		k := min(need, len(data))
		c.pending = append(c.pending, data[:k]...)
		data = data[k:]
		if len(c.pending) == 9 {
			length := int(binary.BigEndian.Uint32(append([]byte{0}, c.pending[:3]...)))
			c.types = append(c.types, c.pending[3])
			c.skip, c.pending = length, c.pending[:0]
		}
	}
	return n, err
}

func (c *frameLog) sawGoAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.types {
		if t == 0x7 {
			return true
		}
	}
	return false
}

// h2Client speaks HTTP/2 with prior knowledge to addr; each connection's frames are logged.
func h2Client(addr string, logs *[]*frameLog, mu *sync.Mutex) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols: h2Only(),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			l := &frameLog{Conn: c}
			mu.Lock()
			*logs = append(*logs, l)
			mu.Unlock()
			return l, nil
		},
	}}
}

// serveBoth serves a proxy side as meshproxy does, HTTP/1.1 and HTTP/2 on one loopback port.
func serveBoth(t *testing.T, h1 Handler, h2 http.Handler) (string, *Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h1)
	srv.EnableH2(h2)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String(), srv
}

// sidecarInboundH2 serves a sidecar's inbound side (HTTP/1.1 and HTTP/2) in front of app.
func sidecarInboundH2(t *testing.T, app string) (string, *Server) {
	p := &Proxy{Mode: Sidecar, Name: "b-pod", NodeName: "n2", DefaultNamespace: "demo", Store: NewStore(), AppAddr: app}
	p.Init()
	return serveBoth(t, p.Inbound(), p.InboundH2())
}

func TestH2ThroughASidecarChainKeepsViaStreamsAndTrailers(t *testing.T) {
	next := make(chan struct{})
	app := h2Backend(t, next, 3)
	in, _ := sidecarInboundH2(t, app)
	ip, port := hostPort(t, "http://"+in)
	store := NewStore()
	store.SetSlice("demo/b", "b-1", []Endpoint{{IP: ip, Port: port, NodeName: "n2", PodName: "b-pod"}})
	a := &Proxy{Mode: Sidecar, Name: "a-pod", NodeName: "n1", DefaultNamespace: "demo", Store: store}
	a.Init()
	out, _ := serveBoth(t, a.Outbound(), a.OutboundH2())
	var logs []*frameLog
	var mu sync.Mutex
	client := h2Client(out, &logs, &mu)

	resp, err := client.Get("http://b.demo/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "proto HTTP/2.0" || resp.ProtoMajor != 2 {
		t.Fatalf("answer %q over %s", body, resp.Proto)
	}
	if got := resp.Header.Get("X-Seen-Via"); got != "2 sidecar/a-pod (n1), 2 sidecar/b-pod (n2)" {
		t.Errorf("request Via at the app = %q", got)
	}
	if got := strings.Join(resp.Header.Values("Via"), ", "); got != "2 sidecar/b-pod (n2), 2 sidecar/a-pod (n1)" {
		t.Errorf("response Via = %q", got)
	}

	// A stream: each message arrives before the app sends the next (nothing is held back),
	// and the trailer comes through.
	resp, err = client.Get("http://b.demo/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	for i := 0; i < 3; i++ {
		next <- struct{}{}
		n, err := resp.Body.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("message %d\n", i) {
			t.Fatalf("message %d: %q %v", i, buf[:n], err)
		}
	}
	io.Copy(io.Discard, resp.Body)
	if resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("trailer lost: %v", resp.Trailer)
	}
	// Both calls were streams of one connection.
	if len(logs) != 1 {
		t.Errorf("the client's calls took %d connections, want 1", len(logs))
	}
}

func TestH2GoawayOnDrainAndOpenStreamsAwaited(t *testing.T) {
	next := make(chan struct{}, 10)
	app := h2Backend(t, next, 2)
	in, srv := sidecarInboundH2(t, app)
	var logs []*frameLog
	var mu sync.Mutex
	client := h2Client(in, &logs, &mu)

	// Keep-alives off (the drain's first step): an idle connection gets GOAWAY at once, and
	// the next call takes a new connection, served by the proxy's next generation.
	get := func() {
		resp, err := client.Get("http://b.demo/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get()
	srv.SetKeepAlivesEnabled(false)
	get()
	waitGoAway(t, logs[0], "no GOAWAY on an idle HTTP/2 connection after keep-alives were turned off")

	// Shutdown: GOAWAY on a connection with an open stream, which is still served to its end.
	srv.SetKeepAlivesEnabled(true)
	resp, err := client.Get("http://b.demo/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mu.Lock()
	streaming := logs[len(logs)-1]
	mu.Unlock()
	shut := shutdownInBackground(srv.Shutdown)
	waitGoAway(t, streaming, "no GOAWAY on Shutdown while a stream was open")
	servedToItsEnd(t, next, resp)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// The drain's start says GOAWAY at once on a connection with a stream open (no new stream
// may land on a proxy going away), serves that stream on, and a new call takes a new
// connection, served by the proxy's next generation.
func TestH2GoawayAtDrainStartWithAStreamOpen(t *testing.T) {
	next := make(chan struct{}, 10)
	app := h2Backend(t, next, 2)
	in, srv := sidecarInboundH2(t, app)
	var logs []*frameLog
	var mu sync.Mutex
	client := h2Client(in, &logs, &mu)
	resp, err := client.Get("http://b.demo/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	srv.SetKeepAlivesEnabled(false)
	mu.Lock()
	first := logs[0]
	mu.Unlock()
	waitGoAway(t, first, "no GOAWAY at the drain's start on a connection with a stream open")
	servedToItsEnd(t, next, resp)
	again, err := client.Get("http://b.demo/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, again.Body)
	again.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(logs) != 2 {
		t.Fatalf("the call after the GOAWAY took %d connections in all, want 2", len(logs))
	}
}

// A sidecar whose app says GOAWAY (its drain has reached Shutdown) says GOAWAY to its own
// clients at once, while their open streams go on: they open new streams elsewhere before
// the app is gone, instead of on a sidecar that would refuse them.
func TestH2SidecarRelaysItsAppsGoAway(t *testing.T) {
	next := make(chan struct{}, 10)
	app, appServer := h2BackendServer(t, next, 2)
	p := &Proxy{Mode: Sidecar, Name: "b-pod", NodeName: "n2", DefaultNamespace: "demo", Store: NewStore(), AppAddr: app}
	p.Init()
	in, srv := serveBoth(t, p.Inbound(), p.InboundH2())
	p.OnAppGoAway = srv.RelayGoAway
	var logs []*frameLog
	var mu sync.Mutex
	resp, err := h2Client(in, &logs, &mu).Get("http://b.demo/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mu.Lock()
	client := logs[0]
	mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	if client.sawGoAway() {
		t.Fatal("GOAWAY before the app said it")
	}
	shut := shutdownInBackground(appServer.Shutdown)
	waitGoAway(t, client, "the sidecar did not relay its app's GOAWAY")
	servedToItsEnd(t, next, resp)
	if err := <-shut; err != nil {
		t.Fatalf("the app's Shutdown: %v", err)
	}
}

// shutdownInBackground runs a server's Shutdown (5 s at most) while the test goes on; its result.
func shutdownInBackground(shutdown func(context.Context) error) <-chan error {
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- shutdown(ctx)
	}()
	return shut
}

// waitGoAway fails the test unless the client's connection hears a GOAWAY within 3 s.
func waitGoAway(t *testing.T, c *frameLog, failure string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !c.sawGoAway() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !c.sawGoAway() {
		t.Fatal(failure)
	}
}

// servedToItsEnd lets the backend's two-message stream finish and checks the client got both.
func servedToItsEnd(t *testing.T, next chan<- struct{}, resp *http.Response) {
	t.Helper()
	next <- struct{}{}
	next <- struct{}{}
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "message 0\nmessage 1\n" {
		t.Fatalf("the open stream was not served to its end: %q %v", body, err)
	}
}

func TestH2NodeInboundIsNotAnOpenRelay(t *testing.T) {
	p := &Proxy{Mode: Node, Name: "n1", Store: NewStore(), NodeProxies: "agents/meshproxy"}
	p.Init()
	in, _ := serveBoth(t, p.Inbound(), p.InboundH2())
	var logs []*frameLog
	var mu sync.Mutex
	req, _ := http.NewRequest("POST", "http://b.demo/x", strings.NewReader(""))
	req.Header.Set(DestinationHeader, "10.9.9.9:8080")
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2Client(in, &logs, &mu).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Grpc-Status") != "14" || !strings.Contains(resp.Header.Get("Grpc-Message"), "not a known endpoint") {
		t.Fatalf("an unknown pod must be refused with UNAVAILABLE: %d %v", resp.StatusCode, resp.Header)
	}
}
