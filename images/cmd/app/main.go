// Command app is the demo microservice: GET / calls each downstream Service (ROUTE=all) or
// one of them in turn (ROUTE=one: requests spread over a large topology without every
// request visiting every service), directly or through the mesh proxy in forward-proxy form, answers with the whole tree of hops, and
// logs one numbered line per request. On SIGTERM /readyz fails at once and the server keeps
// serving for the drain period, so a rolling update loses no request.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"patternbench.local/images/internal/applog"
	"patternbench.local/images/internal/config"
	"patternbench.local/images/internal/h2watch"
	"patternbench.local/images/internal/serve"
)

var version = "dev"

type settings struct {
	Service, Pod, Node, Namespace string
	Downstreams                   []string
	Proxy                         string // host:port of the mesh proxy, "" for direct calls
	// Tunnel: how calls go through Proxy: "forward" (HTTP forward-proxy form, the sidecar
	// and node proxies) or "connect" (a CONNECT tunnel per connection, the node L4 proxy).
	Tunnel                string
	LogPath               string
	LogToken              string
	Listen                string
	Drain, Grace, Timeout time.Duration
	Parallel              bool
	// RouteOne: each request calls one downstream, the next in turn (ROUTE=one), instead of all.
	RouteOne bool
}

func load(env *config.Env) settings {
	host, _ := os.Hostname()
	s := settings{
		Service:     env.Required("SERVICE_NAME"),
		Pod:         env.String("POD_NAME", host),
		Node:        env.String("NODE_NAME", ""),
		Namespace:   env.String("NAMESPACE", ""),
		Downstreams: env.List("DOWNSTREAMS"),
		Proxy:       env.Addr("MESH_PROXY", ""),
		Tunnel:      env.OneOf("MESH_TUNNEL", "forward", "forward", "connect"),
		LogPath:     env.String("LOG_PATH", ""),
		LogToken:    env.String("LOG_TOKEN", ""),
		Listen:      env.Addr("LISTEN", ":8080"),
		Drain:       env.Duration("DRAIN", 5*time.Second),
		Grace:       env.Duration("GRACE", 10*time.Second),
		Timeout:     env.Duration("DOWNSTREAM_TIMEOUT", 5*time.Second),
		Parallel:    env.Bool("PARALLEL", false),
		RouteOne:    env.OneOf("ROUTE", "all", "all", "one") == "one",
	}
	if s.Tunnel == "connect" && s.Proxy == "" {
		env.Required("MESH_PROXY") // a tunnel needs the node L4 proxy's address
	}
	return s
}

// Answer is what GET / returns: this hop and, nested, every downstream hop.
type Answer struct {
	Service    string       `json:"service"`
	Pod        string       `json:"pod"`
	Node       string       `json:"node,omitempty"`
	Version    string       `json:"version"`
	RequestID  string       `json:"request_id"`
	Via        string       `json:"via,omitempty"` // the Via trail this request arrived with
	Downstream []Downstream `json:"downstream,omitempty"`
}

// Downstream is one call's result, with the Via trail of its response.
type Downstream struct {
	Service string `json:"service"`
	Status  int    `json:"status"`
	Via     string `json:"via,omitempty"`
	// Tunnel (MESH_TUNNEL=connect): every proxy the call passed, L4 and waypoint, callee
	// side first as a response's Via reads: the waypoint's upstream trail (on its answer),
	// then the trail the CONNECT was answered with.
	Tunnel string  `json:"tunnel,omitempty"`
	Error  string  `json:"error,omitempty"`
	Answer *Answer `json:"answer,omitempty"`
	// gRPC calls (grpc.go): the call's time, the connection that carried it, and the
	// channel's connections that ended since its last call.
	MS         float64         `json:"ms,omitempty"`
	Conn       string          `json:"conn,omitempty"`
	EndedConns []h2watch.Ended `json:"ended_conns,omitempty"`
}

type app struct {
	s      settings
	turn   atomic.Uint64 // ROUTE=one: the next downstream
	log    *applog.Writer
	client *http.Client
	drain  serve.Draining
	grpc   channels // gRPC channels to the downstreams (grpc.go)
}

func (a *app) downstreamURL(service string) string {
	host := service
	if a.s.Proxy != "" && a.s.Namespace != "" {
		host = service + "." + a.s.Namespace // the proxy serves Services by namespace
	}
	return "http://" + host + "/"
}

func (a *app) call(ctx context.Context, service, requestID string) Downstream {
	d := Downstream{Service: service}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.downstreamURL(service), nil)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	req.Header.Set("X-Request-Id", requestID)
	var conn net.Conn
	if a.s.Tunnel == "connect" {
		req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { conn = info.Conn },
		}))
	}
	resp, err := a.client.Do(req)
	if err != nil {
		d.Error = err.Error()
		var te *tunnelError
		if errors.As(err, &te) {
			d.Status, d.Tunnel, d.Error = te.status, te.trail, te.msg
		}
		return d
	}
	defer resp.Body.Close()
	d.Status = resp.StatusCode
	d.Via = resp.Header.Get("Via")
	if tc, ok := conn.(*tunnelConn); ok {
		d.Tunnel = joinTrail(resp.Header.Get(trailHeader), tc.trail)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		d.Error = err.Error()
		return d
	}
	var nested Answer
	if json.Unmarshal(body, &nested) == nil && nested.Service != "" {
		d.Answer = &nested
	} else if resp.StatusCode >= 400 {
		d.Error = string(body)
	}
	return d
}

// targets are the downstreams this request calls: all of them, or (ROUTE=one) the next in turn.
func (a *app) targets() []string {
	if !a.s.RouteOne || len(a.s.Downstreams) < 2 {
		return a.s.Downstreams
	}
	i := (a.turn.Add(1) - 1) % uint64(len(a.s.Downstreams))
	return a.s.Downstreams[i : i+1]
}

// joinTrail joins trails, skipping empty ones.
func joinTrail(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ", ")
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (a *app) root(w http.ResponseWriter, r *http.Request) {
	requestID := r.Header.Get("X-Request-Id")
	if requestID == "" {
		requestID = newRequestID()
	}
	if _, err := a.log.Log(requestID); err != nil {
		fmt.Fprintf(os.Stderr, "app: writing the log line: %v\n", err)
	}
	ans := Answer{Service: a.s.Service, Pod: a.s.Pod, Node: a.s.Node, Version: version, RequestID: requestID, Via: r.Header.Get("Via")}
	targets := a.targets()
	ans.Downstream = make([]Downstream, len(targets))
	ctx, cancel := context.WithTimeout(r.Context(), a.s.Timeout)
	defer cancel()
	if a.s.Parallel {
		var wg sync.WaitGroup
		for i, svc := range targets {
			wg.Add(1)
			go func(i int, svc string) {
				defer wg.Done()
				ans.Downstream[i] = a.call(ctx, svc, requestID)
			}(i, svc)
		}
		wg.Wait()
	} else {
		for i, svc := range targets {
			ans.Downstream[i] = a.call(ctx, svc, requestID)
		}
	}
	status := http.StatusOK
	for _, d := range ans.Downstream {
		if d.Error != "" || d.Status >= 400 {
			status = http.StatusBadGateway
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", requestID)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ans)
}

// readyz answers 200 while the pod serves. With ?chain=1 it also asks every downstream's
// /readyz?chain=1 along the path a real call takes (proxy, Service), so a deploy can wait
// until the whole chain answers from this pod's node without writing a request log line.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	if a.drain.Is() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Query().Get("chain") != "1" {
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.s.Timeout)
	defer cancel()
	for _, svc := range a.s.Downstreams {
		if problem := a.chainReady(ctx, svc); problem != "" {
			http.Error(w, svc+": "+problem, http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (a *app) chainReady(ctx context.Context, service string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.downstreamURL(service)+"readyz?chain=1", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return resp.Status
	}
	return ""
}

// newTransport calls downstreams directly, through the mesh proxy in forward-proxy form, or
// through CONNECT tunnels to the node L4 proxy.
func newTransport(s settings) *http.Transport {
	transport := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 60 * time.Second}
	switch {
	case s.Proxy != "" && s.Tunnel == "connect":
		transport.DialContext = (&tunnelDialer{proxy: s.Proxy, d: net.Dialer{Timeout: 2 * time.Second}}).DialContext
	case s.Proxy != "":
		transport.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: s.Proxy})
	}
	return transport
}

func main() {
	if config.VersionRequested("app", version) {
		return
	}
	env := config.FromOS()
	s := load(env)
	if env.Err != nil {
		config.Fail("app", env.Err)
	}
	var out io.Writer = os.Stdout
	if s.LogPath != "" {
		f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			config.Fail("app", &config.Error{Setting: "LOG_PATH", Problem: err.Error()})
		}
		defer f.Close()
		out = f
	}
	a := &app{s: s, log: applog.NewWriter(out, s.Pod, s.LogToken), client: &http.Client{Transport: newTransport(s)}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.root)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", a.readyz)
	ln, err := serve.Listen(s.Listen, false)
	if err != nil {
		config.Fail("app", &config.Error{Setting: "LISTEN", Problem: err.Error()})
	}
	server := &http.Server{Handler: a.withGRPC(mux), Protocols: http1AndH2C(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	group := &serve.Group{Servers: []serve.Server{server}, Drain: s.Drain, Grace: s.Grace, Draining: &a.drain}
	if err := group.Serve([]net.Listener{ln}); err != nil {
		fmt.Fprintf(os.Stderr, "app: %v\n", err)
		os.Exit(1)
	}
}
