package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Mode is where the proxy runs: in the pod (sidecar) or once per node (node).
type Mode string

const (
	Sidecar Mode = "sidecar"
	Node    Mode = "node"
)

// DestinationHeader tells a node proxy's inbound side which pod to deliver to.
const DestinationHeader = "X-Mesh-Destination"

// Proxy routes outbound calls to Services and delivers inbound calls to pods.
type Proxy struct {
	Mode Mode
	// Name goes into Via: the pod name (sidecar) or the node name (node).
	Name string
	// NodeName, when known, goes into Via as a comment, so every hop of a trail says which
	// node it ran on and hops can be classified from where they really ran.
	NodeName string
	// DefaultNamespace resolves bare Service names (sidecar: the pod's namespace).
	DefaultNamespace string
	Store            *Store
	// AppAddr: where a sidecar's inbound side delivers (the app on localhost).
	AppAddr string
	// NodeProxies: Store key of the headless Service listing node proxies (node mode),
	// so a node proxy finds the proxy on the destination pod's node.
	NodeProxies string
	InboundPort int
	Timeout     time.Duration
	Retries     int
	Metrics     *Metrics

	transport *http.Transport
	outbound  *httputil.ReverseProxy
	inbound   *httputil.ReverseProxy
}

type targetKey struct{}

// Init builds the keep-alive pool and the two reverse proxies.
func (p *Proxy) Init() {
	if p.Metrics == nil {
		p.Metrics = NewMetrics()
	}
	if p.Timeout == 0 {
		p.Timeout = 10 * time.Second
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	p.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			p.Metrics.Upstreams.Add(1)
			return &countedConn{Conn: conn, gauge: &p.Metrics.Upstreams}, nil
		},
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: p.Timeout,
	}
	via := p.ViaEntry()
	rewrite := func(pr *httputil.ProxyRequest) {
		target := pr.In.Context().Value(targetKey{}).(*url.URL)
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		pr.Out.Header.Del("Proxy-Connection")
		AppendVia(pr.Out.Header, via)
	}
	modify := func(resp *http.Response) error {
		AppendVia(resp.Header, via)
		return nil
	}
	// A draining app answers "Connection: close". Inbound, pass that on to whoever holds a
	// keep-alive connection to this pod (a client through a NodePort, another pod's proxy):
	// its next request then opens a new connection, which lands on a Ready pod, instead of
	// arriving here after the app has gone.
	modifyInbound := func(resp *http.Response) error {
		AppendVia(resp.Header, via)
		if resp.Close {
			resp.Header.Set("Connection", "close")
		}
		return nil
	}
	fail := func(w http.ResponseWriter, r *http.Request, err error) {
		w.Header().Set("Via", via)
		status := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
		http.Error(w, "meshproxy: "+err.Error(), status)
	}
	p.outbound = &httputil.ReverseProxy{Rewrite: rewrite, ModifyResponse: modify, ErrorHandler: fail, Transport: &retrying{p: p}}
	p.inbound = &httputil.ReverseProxy{Rewrite: rewrite, ModifyResponse: modifyInbound, ErrorHandler: fail, Transport: p.transport}
}

// Close drops idle upstream connections.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// pick chooses where an outbound request goes: the destination pod (sidecar), or the node
// proxy of the destination pod's node with the pod in DestinationHeader (node).
func (p *Proxy) pick(dest Destination) (target *url.URL, podAddr string, err error) {
	ep, ok := p.Store.Pick(dest.Key())
	if !ok {
		return nil, "", fmt.Errorf("no ready endpoint for service %s", dest.Key())
	}
	podAddr = net.JoinHostPort(ep.IP, strconv.Itoa(ep.Port))
	if p.Mode == Sidecar {
		return &url.URL{Scheme: "http", Host: podAddr}, podAddr, nil
	}
	for _, proxy := range p.Store.Endpoints(p.NodeProxies) {
		if proxy.NodeName == ep.NodeName {
			return &url.URL{Scheme: "http", Host: net.JoinHostPort(proxy.IP, strconv.Itoa(p.InboundPort))}, podAddr, nil
		}
	}
	return nil, "", fmt.Errorf("no node proxy on node %q (for %s)", ep.NodeName, dest.Key())
}

// Outbound handles forward-proxy requests from apps: GET http://svc.ns/path.
func (p *Proxy) Outbound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		defer func() { p.Metrics.Observe("outbound", time.Since(start), rec.status >= 500) }()
		if r.URL.Host == "" {
			rec.status = http.StatusBadRequest
			http.Error(rec, "meshproxy: outbound requests must use the absolute (forward-proxy) form", http.StatusBadRequest)
			return
		}
		dest, err := ParseHost(r.URL.Host, p.DefaultNamespace)
		if err != nil {
			rec.status = http.StatusBadRequest
			http.Error(rec, "meshproxy: "+err.Error(), http.StatusBadRequest)
			return
		}
		target, podAddr, err := p.pick(dest)
		if err != nil {
			rec.status = http.StatusServiceUnavailable
			rec.Header().Set("Via", p.ViaEntry())
			http.Error(rec, "meshproxy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		r.Host = r.URL.Host
		r.Header.Del(DestinationHeader)
		if p.Mode == Node {
			r.Header.Set(DestinationHeader, podAddr)
		}
		ctx := context.WithValue(r.Context(), targetKey{}, target)
		ctx = context.WithValue(ctx, destKey{}, dest)
		p.outbound.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// Inbound delivers a request to the app (sidecar) or to the pod named in DestinationHeader (node).
func (p *Proxy) Inbound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		defer func() { p.Metrics.Observe("inbound", time.Since(start), rec.status >= 500) }()
		addr := p.AppAddr
		if p.Mode == Node {
			addr = r.Header.Get(DestinationHeader)
			r.Header.Del(DestinationHeader)
			if !p.knownEndpoint(addr) {
				rec.status = http.StatusForbidden
				http.Error(rec, fmt.Sprintf("meshproxy: %q is not a known endpoint", addr), http.StatusForbidden)
				return
			}
		}
		ctx := context.WithValue(r.Context(), targetKey{}, &url.URL{Scheme: "http", Host: addr})
		p.inbound.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// knownEndpoint: a node proxy delivers only to pods it knows from EndpointSlices, so it is
// not an open relay.
func (p *Proxy) knownEndpoint(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return p.Store.HasEndpoint(host, port)
}

type destKey struct{}

// retrying retries idempotent requests without a body on another endpoint, when enabled.
type retrying struct{ p *Proxy }

func (t *retrying) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.p.transport.RoundTrip(req)
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Method == http.MethodOptions
	for attempt := 0; err != nil && attempt < t.p.Retries && idempotent && (req.Body == nil || req.Body == http.NoBody); attempt++ {
		dest, ok := req.Context().Value(destKey{}).(Destination)
		if !ok {
			break
		}
		target, podAddr, perr := t.p.pick(dest)
		if perr != nil {
			break
		}
		retry := req.Clone(req.Context())
		retry.URL.Host = target.Host
		if t.p.Mode == Node {
			retry.Header.Set(DestinationHeader, podAddr)
		}
		resp, err = t.p.transport.RoundTrip(retry)
	}
	return resp, err
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// ViaEntry is this proxy's entry in a Via trail: "1.1 <mode>/<name> (<node>)" (RFC 9110
// allows a comment after received-by; the node goes there).
func (p *Proxy) ViaEntry() string {
	entry := "1.1 " + string(p.Mode) + "/" + p.Name
	if p.NodeName != "" {
		entry += " (" + p.NodeName + ")"
	}
	return entry
}

// AppendVia adds one entry to a header's Via list (RFC 9110 7.6.3: comma-separated, in order).
func AppendVia(h http.Header, entry string) {
	h.Set("Via", JoinVia(h.Get("Via"), entry))
}

// JoinVia appends entry to an existing Via value.
func JoinVia(existing, entry string) string {
	existing = strings.TrimSpace(existing)
	if existing == "" {
		return entry
	}
	return existing + ", " + entry
}
