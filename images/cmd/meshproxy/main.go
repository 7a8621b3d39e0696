// Command meshproxy is the mesh agent. As a sidecar it takes the app's outbound calls on
// 127.0.0.1:15001 and the pod's inbound traffic on :15006; as a node agent (hostNetwork) it
// does the same for every pod of its node, and hands its listening sockets to its successor
// (SO_REUSEPORT) so a DaemonSet rolling update with maxSurge refuses no connection.
//
// Without the handover (REUSE_PORT=false, the "naive" rollout), the new pod cannot bind
// until the old one has exited: connections in that gap are refused, and the node's pods
// see errors for as long as the old proxy drains plus the new one's start-up.
//
// The ambient modes: MODE=l4 is the node L4 proxy (hostNetwork, one per node): apps open
// CONNECT tunnels on NODE_IP:15001, L4 peers and waypoints open HTTP/2 CONNECT streams on
// NODE_IP:15008; it hands its sockets over like a node proxy. MODE=waypoint is the L7 proxy
// of one Service (WAYPOINT_FOR), a Deployment: streams from L4 proxies on :15008, plain
// HTTP on :15006.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"patternbench.local/images/internal/config"
	"patternbench.local/images/internal/mesh"
	"patternbench.local/images/internal/serve"
)

var version = "dev"

func main() {
	if config.VersionRequested("meshproxy", version) {
		return
	}
	env := config.FromOS()
	mode := mesh.Mode(env.OneOf("MODE", "sidecar", "sidecar", "node", "l4", "waypoint"))
	host, _ := os.Hostname()
	name := env.String("POD_NAME", host)
	nodeName := env.String("NODE_NAME", "")
	perNode := mode == mesh.Node || mode == mesh.L4
	if perNode {
		name = env.Required("NODE_NAME")
	}
	// A node proxy binds the node's address only (LISTEN_HOST), not every host interface.
	listenHost := env.String("LISTEN_HOST", "")
	defaultOutbound := "127.0.0.1:15001"
	if perNode {
		defaultOutbound = net.JoinHostPort(listenHost, "15001")
	}
	outboundAddr := env.Addr("OUTBOUND", defaultOutbound)
	inboundPort := env.Int("INBOUND_PORT", 15006, 1, 65535)
	adminAddr := env.Addr("ADMIN", net.JoinHostPort(listenHost, "15020"))
	namespace := env.String("NAMESPACE", "")
	watchNamespace := namespace
	nodeProxies := ""
	appAddr := ""
	waypointFor := ""
	peerPort := 0
	switch mode {
	case mesh.Sidecar:
		appAddr = env.Addr("APP", "127.0.0.1:8080")
		if namespace == "" {
			env.Required("NAMESPACE")
		}
	case mesh.Waypoint:
		namespace = env.Required("NAMESPACE")
		waypointFor = env.Required("WAYPOINT_FOR") // the Service (in NAMESPACE) it takes calls for
		if env.Err == nil && strings.ContainsAny(waypointFor, "./: ") {
			env.Err = &config.Error{Setting: "WAYPOINT_FOR", Problem: fmt.Sprintf("%q is not a Service name", waypointFor)}
		}
		fallthrough
	default:
		// Node and L4 proxies serve every namespace; a waypoint needs its Service's and the
		// L4 proxies' namespaces.
		watchNamespace = ""
		nodeProxies = env.Required("NODE_PROXIES") // namespace/service of the node (or L4) proxies
	}
	if mode == mesh.L4 || mode == mesh.Waypoint {
		peerPort = env.Int("PEER_PORT", mesh.PeerPort, 1, 65535) // HTTP/2 CONNECT from peers
	}
	reusePort := env.Bool("REUSE_PORT", perNode)
	drain := env.Duration("DRAIN", 3*time.Second)
	grace := env.Duration("GRACE", 10*time.Second)
	timeout := env.Duration("TIMEOUT", 10*time.Second)
	retries := env.Int("RETRIES", 0, 0, 10)
	apiServer := env.String("API_SERVER", "")
	syncWait := env.Duration("SYNC_WAIT", 10*time.Second) // at most, before lookups go ahead unsynced
	if env.Err != nil {
		config.Fail("meshproxy", env.Err)
	}

	var api *mesh.API
	var err error
	if apiServer != "" {
		api = &mesh.API{Base: apiServer, HTTP: &http.Client{}} // tests: a plain-HTTP API
	} else if api, err = mesh.InClusterAPI(); err != nil {
		config.Fail("meshproxy", err)
	}
	store := mesh.NewStore()
	watcher := &mesh.Watcher{
		API: api, Namespace: watchNamespace, Store: store, Synced: make(chan struct{}),
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "meshproxy: "+f+"\n", a...) },
	}
	// Requests the kernel hands this proxy before it has listed the endpoints wait for the
	// list (its predecessor, if any, still serves meanwhile) instead of failing.
	store.GateUntil(watcher.Synced, time.Now().Add(syncWait))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watcher.Run(ctx)

	metrics := mesh.NewMetrics()
	var servers []serve.Server
	var addrs []string
	var onSignal func()
	var closeProxy func()
	var fed net.Listener // the waypoint's tunnel streams, for the server at address ""
	inboundAddr := net.JoinHostPort(listenHost, strconv.Itoa(inboundPort))
	peerAddr := net.JoinHostPort(listenHost, strconv.Itoa(peerPort))
	switch mode {
	case mesh.L4:
		l4 := &mesh.L4Proxy{Name: name, NodeName: nodeName, Store: store, NodeProxies: nodeProxies,
			PeerPort: peerPort, Timeout: timeout, Retries: retries, Metrics: metrics}
		l4.Init()
		metrics.PeerConnections = l4.Peers.Conns.Load
		// The peer server goes first on shutdown: GOAWAY, so peers move to the successor.
		servers = []serve.Server{l4.PeerServer(), l4.Outbound()}
		addrs = []string{peerAddr, outboundAddr}
		onSignal, closeProxy = l4.Drain, l4.Close
		inboundAddr = peerAddr
	case mesh.Waypoint:
		proxy := &mesh.Proxy{
			Mode: mode, Name: name, NodeName: nodeName, DefaultNamespace: namespace, Store: store,
			NodeProxies: nodeProxies, Timeout: timeout, Retries: retries, Metrics: metrics,
			Service: namespace + "/" + waypointFor, PeerPort: peerPort,
		}
		proxy.Init()
		metrics.PeerConnections = proxy.Peers.Conns.Load
		tunnels, streams := proxy.WaypointTunnels()
		// The stream server goes first on shutdown: it ends the idle tunnels, so the
		// HTTP/2 server's wait for its handlers can finish.
		streamServer := mesh.NewServer(proxy.Waypoint())
		fed = streams
		servers = []serve.Server{streamServer, mesh.NewServer(proxy.Waypoint()), &peerServer{mesh.NewPeerServer(tunnels)}}
		addrs = []string{"", inboundAddr, peerAddr}
		closeProxy = proxy.Close
		outboundAddr = peerAddr
	default:
		proxy := &mesh.Proxy{
			Mode: mode, Name: name, NodeName: nodeName, DefaultNamespace: namespace, Store: store, AppAddr: appAddr,
			NodeProxies: nodeProxies, InboundPort: inboundPort, Timeout: timeout, Retries: retries, Metrics: metrics,
		}
		proxy.Init()
		// Both ports take HTTP/2 cleartext too (gRPC; mesh/h2.go), found by its preface.
		outbound, inbound := mesh.NewServer(proxy.Outbound()), mesh.NewServer(proxy.Inbound())
		if mode == mesh.Sidecar {
			proxy.OnAppGoAway = inbound.RelayGoAway // its app going away: its clients go elsewhere
		}
		outbound.EnableH2(proxy.OutboundH2())
		inbound.EnableH2(proxy.InboundH2())
		servers = []serve.Server{outbound, inbound}
		addrs = []string{outboundAddr, inboundAddr}
		closeProxy = proxy.Close
	}

	var draining serve.Draining
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-watcher.Synced:
		default:
			http.Error(w, "endpoints not synced yet", http.StatusServiceUnavailable)
			return
		}
		if draining.Is() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	admin.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.Write(w, store.Count())
	})

	addrs = append(addrs, adminAddr)
	servers = append(servers, &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second})
	var listeners []net.Listener
	for _, addr := range addrs {
		if addr == "" {
			listeners = append(listeners, fed)
			continue
		}
		ln, err := serve.Listen(addr, reusePort)
		if err != nil {
			config.Fail("meshproxy", fmt.Errorf("listening on %s: %w", addr, err))
		}
		listeners = append(listeners, ln)
	}
	fmt.Fprintf(os.Stderr, "meshproxy %s: mode=%s name=%s outbound=%s inbound=%s reuseport=%v\n", version, mode, name, outboundAddr, inboundAddr, reusePort)
	group := &serve.Group{Servers: servers, Drain: drain, Grace: grace, Draining: &draining, OnSignal: onSignal}
	if err := group.Serve(listeners); err != nil {
		fmt.Fprintf(os.Stderr, "meshproxy: %v\n", err)
		os.Exit(1)
	}
	closeProxy()
}

// peerServer is the HTTP/2 server ambient peers open streams on. Its SetKeepAlivesEnabled
// is a no-op: http.Server's does nothing for HTTP/2 connections anyway, and the tunnels
// on them drain by themselves (the L4 proxy's quiet close, the waypoint's Connection: close).
type peerServer struct{ *http.Server }

func (s *peerServer) SetKeepAlivesEnabled(bool) {}
