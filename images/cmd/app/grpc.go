package main

// gRPC along the chain (issue 24): the same calls as GET /, as a unary RPC (Call) and as a
// server-streaming RPC (Watch) that stays open, on the app's own port (HTTP/2 cleartext
// beside HTTP/1.1). Real gRPC (grpc-go), because what is measured is what gRPC clients do
// across an upgrade: GOAWAY handling, transparent retries, reconnect backoff. No protoc: the
// messages are Answer's JSON (internal/chainrpc, shared with the load).

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"patternbench.local/images/internal/chainrpc"
	"patternbench.local/images/internal/h2watch"
)

const minIntervalMS = 10

// channels holds one gRPC channel per downstream Service, made on first use, over watched
// connections: each call says which connection carried it, and the channel's connections
// that ended since its last call: how (a GOAWAY first, or a cut) and how long the channel
// went without one. An upgraded proxy between two apps is seen only from here.
type channels struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	watch *h2watch.Watcher
}

// connOf is the watched connection a call's peer names, and the trail of the tunnel it is
// (ambient: the L4 proxies a call passes write no Via; the CONNECT's answer named them).
func connOf(p *peer.Peer) (id, tunnel string) {
	if p == nil {
		return "", ""
	}
	if addr, ok := p.Addr.(h2watch.Addr); ok {
		id = addr.ID
		if t, ok := addr.Addr.(tunnelAddr); ok {
			tunnel = t.trail
		}
	}
	return id, tunnel
}

// channel is the app's gRPC channel to a downstream Service: through its sidecar or its
// node's proxy (the Service named in :authority), through a CONNECT tunnel to the node's L4
// proxy, or straight to the Service's address (one pod per channel behind kube-proxy).
func (a *app) channel(service string) (*grpc.ClientConn, error) {
	a.grpc.mu.Lock()
	defer a.grpc.mu.Unlock()
	if c, ok := a.grpc.conns[service]; ok {
		return c, nil
	}
	authority := strings.TrimSuffix(strings.TrimPrefix(a.downstreamURL(service), "http://"), "/")
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(chainrpc.Subtype)),
		grpc.WithAuthority(authority),
	}
	hostPort := authority
	if _, _, err := net.SplitHostPort(authority); err != nil {
		hostPort = net.JoinHostPort(authority, "80") // a Service's port
	}
	target := "passthrough:///" + hostPort
	var dial func(ctx context.Context, addr string) (net.Conn, error)
	switch {
	case a.s.Proxy != "" && a.s.Tunnel == "connect":
		tunnel := &tunnelDialer{proxy: a.s.Proxy, d: net.Dialer{Timeout: 2 * time.Second}}
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return tunnel.DialContext(ctx, "tcp", addr) }
	case a.s.Proxy != "":
		target = "passthrough:///" + a.s.Proxy
	}
	if a.grpc.watch == nil {
		a.grpc.watch = &h2watch.Watcher{Prefix: a.s.Pod, Dialer: net.Dialer{Timeout: 2 * time.Second}}
	}
	opts = append(opts, grpc.WithContextDialer(a.grpc.watch.Dial(service, dial)))
	c, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	if a.grpc.conns == nil {
		a.grpc.conns = map[string]*grpc.ClientConn{}
	}
	a.grpc.conns[service] = c
	return c, nil
}

// outgoing is the request's metadata for a downstream call: its id.
func outgoing(ctx context.Context, requestID string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
}

// viaOf is the Via trail in gRPC metadata (every proxy adds its entry on both ways).
func viaOf(md metadata.MD) string { return strings.Join(md.Get("via"), ", ") }

// grpcCall is Call: this hop's Answer, with every downstream called by Call in turn.
func (a *app) grpcCall(ctx context.Context, req *chainrpc.CallRequest) (any, error) {
	in, _ := metadata.FromIncomingContext(ctx)
	ans := a.hop(req.RequestID, viaOf(in))
	ctx, cancel := context.WithTimeout(ctx, a.s.Timeout)
	defer cancel()
	for _, svc := range a.targets() {
		ans.Downstream = append(ans.Downstream, a.grpcDownstream(ctx, svc, req.RequestID))
	}
	for _, d := range ans.Downstream {
		if d.Error != "" {
			return ans, status.Error(codes.Unavailable, d.Service+": "+d.Error)
		}
	}
	return ans, nil
}

// hop is this hop's Answer before its downstreams, its log line written.
func (a *app) hop(requestID, via string) *Answer {
	if requestID == "" {
		requestID = newRequestID()
	}
	_, _ = a.log.Log(requestID)
	return &Answer{Service: a.s.Service, Pod: a.s.Pod, Node: a.s.Node, Version: version, RequestID: requestID, Via: via}
}

func (a *app) grpcDownstream(ctx context.Context, service, requestID string) Downstream {
	d := Downstream{Service: service}
	c, err := a.channel(service)
	if err != nil {
		d.Error = err.Error()
		return d
	}
	var header metadata.MD
	var p peer.Peer
	nested := &Answer{}
	began := time.Now()
	err = c.Invoke(outgoing(ctx, requestID), chainrpc.CallMethod, &chainrpc.CallRequest{RequestID: requestID}, nested, grpc.Header(&header), grpc.Peer(&p))
	d.MS = float64(time.Since(began).Microseconds()) / 1000
	d.Via = viaOf(header)
	d.Conn, d.Tunnel = connOf(&p)
	d.EndedConns = a.grpc.watch.Ended(service)
	if err != nil {
		d.Error = status.Convert(err).Code().String() + ": " + status.Convert(err).Message()
	} else {
		d.Status = 200
	}
	if nested.Service != "" {
		d.Answer = nested
	}
	return d
}

// watch is Watch: one message per interval until the client goes, each this hop's Answer
// with the latest message of every downstream's own Watch (opened once, kept open). A
// downstream stream that ends ends this one, with its status and where it broke.
func (a *app) watch(req *chainrpc.CallRequest, stream grpc.ServerStream) error {
	ctx := stream.Context()
	in, _ := metadata.FromIncomingContext(ctx)
	via := viaOf(in)
	interval := time.Duration(max(req.IntervalMS, minIntervalMS)) * time.Millisecond
	type downstream struct {
		service string
		stream  grpc.ClientStream
		header  string
		conn    string
		tunnel  string
		ended   []h2watch.Ended
	}
	var downs []downstream
	for _, svc := range a.targets() {
		c, err := a.channel(svc)
		if err != nil {
			return status.Error(codes.Unavailable, svc+": "+err.Error())
		}
		s, err := c.NewStream(outgoing(ctx, req.RequestID), chainrpc.WatchDesc, chainrpc.WatchMethod)
		if err == nil {
			err = s.SendMsg(&chainrpc.CallRequest{RequestID: req.RequestID, IntervalMS: req.IntervalMS})
		}
		if err == nil {
			err = s.CloseSend()
		}
		if err != nil {
			return status.Error(status.Code(err), svc+": "+err.Error())
		}
		d := downstream{service: svc, stream: s}
		if p, ok := peer.FromContext(s.Context()); ok {
			d.conn, d.tunnel = connOf(p)
		}
		d.ended = a.grpc.watch.Ended(svc)
		downs = append(downs, d)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		ans := a.hop(req.RequestID, via)
		for i := range downs {
			nested := &Answer{}
			if err := downs[i].stream.RecvMsg(nested); err != nil {
				if errors.Is(err, io.EOF) {
					err = status.Error(codes.Unavailable, "the stream ended")
				}
				return status.Error(status.Code(err), downs[i].service+": "+status.Convert(err).Message())
			}
			if downs[i].header == "" {
				if md, err := downs[i].stream.Header(); err == nil {
					downs[i].header = viaOf(md)
				}
			}
			ans.Downstream = append(ans.Downstream, Downstream{Service: downs[i].service, Status: 200, Via: downs[i].header, Answer: nested,
				Tunnel: downs[i].tunnel, Conn: downs[i].conn, EndedConns: downs[i].ended})
			downs[i].ended = nil // said once, with the stream's first message
		}
		if err := stream.SendMsg(ans); err != nil {
			return err
		}
		if len(downs) > 0 {
			continue // paced by the leaves
		}
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// http1AndH2C: HTTP/1.1, and HTTP/2 cleartext with prior knowledge (gRPC) on the same port.
func http1AndH2C() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// withGRPC serves gRPC calls (HTTP/2, content-type application/grpc) with the Chain service
// and everything else with h. net/http's HTTP/2 server sends GOAWAY when the app drains.
func (a *app) withGRPC(h http.Handler) http.Handler {
	server := grpc.NewServer()
	server.RegisterService(chainrpc.Desc(a.grpcCall, a.watch), a)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			server.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
