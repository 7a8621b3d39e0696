package mesh

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// throughSidecar serves h as the only endpoint of demo/web behind an outbound sidecar and
// returns the sidecar's address and the proxy.
func throughSidecar(t *testing.T, h http.Handler) (string, *Proxy) {
	be := httptest.NewServer(h)
	t.Cleanup(be.Close)
	ip, port := hostPort(t, be.URL)
	store := NewStore()
	store.SetSlice("demo/web", "s", []Endpoint{{IP: ip, Port: port}})
	p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store}
	p.Init()
	t.Cleanup(p.Close)
	return serveHandler(t, p.Outbound()), p
}

func TestBodiesPassThroughAsFramed(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	addr, p := throughSidecar(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "part %d;", i)
				w.(http.Flusher).Flush()
			}
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		case "/echo":
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %d %s", r.Method, len(body), body[:min(len(body), 10)])
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	client := proxyClient(addr)
	get := func(method, path string, body io.Reader) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://web"+path, body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp.StatusCode, string(b), resp.Header
	}
	if _, body, _ := get("GET", "/chunked", nil); body != "part 0;part 1;part 2;" {
		t.Errorf("chunked answer: %q", body)
	}
	if _, body, _ := get("GET", "/big", nil); body != big {
		t.Errorf("1 MiB answer: got %d bytes", len(body))
	}
	if _, body, _ := get("POST", "/echo", strings.NewReader(big)); body != fmt.Sprintf("POST %d %s", len(big), big[:10]) {
		t.Errorf("POST with Content-Length: %q", body)
	}
	chunkedBody := io.MultiReader(strings.NewReader("abc"), strings.NewReader("defghijkl")) // unknown length: sent chunked
	if _, body, _ := get("PUT", "/echo", chunkedBody); body != "PUT 12 abcdefghij" {
		t.Errorf("chunked request body: %q", body)
	}
	if code, body, h := get("HEAD", "/", nil); code != 200 || body != "" || h.Get("Content-Length") != "5" {
		t.Errorf("HEAD: %d %q %v", code, body, h)
	}
	if code, body, _ := get("GET", "/empty", nil); code != 204 || body != "" {
		t.Errorf("204: %d %q", code, body)
	}
	if _, body, _ := get("GET", "/", nil); body != "hello" {
		t.Errorf("after all that, a plain GET: %q", body)
	}
	if n := p.Metrics.Upstreams.Load(); n != 1 {
		t.Errorf("%d upstream connections for sequential requests, want 1 kept alive", n)
	}
}

func TestPipelinedRequestsAnswerInOrder(t *testing.T) {
	addr, _ := throughSidecar(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET http://web/one HTTP/1.1\r\nHost: web\r\n\r\nGET http://web/two HTTP/1.1\r\nHost: web\r\n\r\n")
	br := bufio.NewReader(conn)
	for _, want := range []string{"/one", "/two"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("answer %q, want %q", body, want)
		}
	}
}

func TestExpectContinueAndAnUpstreamThatEndsItsAnswerByClosing(t *testing.T) {
	// An HTTP/1.0-style upstream: no Content-Length, the body ends when it closes.
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
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\ngot %q", body)
			}()
		}
	}()
	ip, port := hostPort(t, "http://"+ln.Addr().String())
	store := NewStore()
	store.SetSlice("demo/old", "s", []Endpoint{{IP: ip, Port: port}})
	p := &Proxy{Mode: Sidecar, Name: "p", DefaultNamespace: "demo", Store: store}
	p.Init()
	req, _ := http.NewRequest("POST", "http://old/", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	transport := &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + serveHandler(t, p.Outbound()))), ExpectContinueTimeout: 5 * time.Second}
	start := time.Now()
	resp, err := (&http.Client{Transport: transport, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != `got "payload"` || !resp.Close || resp.Header.Get("Via") != "1.1 sidecar/p" {
		t.Fatalf("answer %q close=%v via=%q", body, resp.Close, resp.Header.Get("Via"))
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("the client waited for its 100 Continue")
	}
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	addr, _ := throughSidecar(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, raw := range []string{
		"GET http://web/ HTTP/1.1\r\nHost: web\r\nContent-Length: x\r\n\r\n",
		"GET http://web/ HTTP/1.1\r\nHost: web\r\n folded: line\r\n\r\n",
		"GET http://web/ HTTP/2.0\r\nHost: web\r\n\r\n",
		"GET http://web/ HTTP/1.1\r\nHost: web\r\nX-Big: " + strings.Repeat("a", maxHead) + "\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, raw)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		answer, _ := io.ReadAll(conn)
		conn.Close()
		if !bytes.HasPrefix(answer, []byte("HTTP/1.1 4")) {
			t.Errorf("%.60q: answered %.80q", raw, answer)
		}
	}
}

func mustURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		panic(err)
	}
	return u
}

func TestChunkedBodyWinsOverContentLength(t *testing.T) {
	var seenLength, seenBody string
	addr, _ := throughSidecar(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seenLength, seenBody = r.Header.Get("Content-Length"), string(b)
	}))
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST http://web/ HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || seenLength != "" || seenBody != "hello" {
		t.Fatalf("status %d; the app saw Content-Length %q and body %q", resp.StatusCode, seenLength, seenBody)
	}
}

func TestManyConnectionsWaitWithoutBuffers(t *testing.T) {
	addr, _ := throughSidecar(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	conns := make([]net.Conn, lendReadersAbove+16)
	readers := make([]*bufio.Reader, len(conns))
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], readers[i] = c, bufio.NewReader(c)
	}
	for round := 0; round < 2; round++ { // the second round finds every connection waiting
		for i, c := range conns {
			path := fmt.Sprintf("/%d-%d", round, i)
			fmt.Fprintf(c, "GET http://web%s HTTP/1.1\r\nHost: web\r\n\r\n", path)
			resp, err := http.ReadResponse(readers[i], nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != path {
				t.Fatalf("answer %q, want %q", body, path)
			}
		}
	}
}
