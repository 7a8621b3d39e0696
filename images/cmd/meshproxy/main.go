// Command meshproxy is the mesh agent. As a sidecar it takes the app's outbound calls on
// 127.0.0.1:15001 and the pod's inbound traffic on :15006; as a node agent (hostNetwork) it
// does the same for every pod of its node, and hands its listening sockets to its successor
// (SO_REUSEPORT) so a DaemonSet rolling update with maxSurge refuses no connection.
//
// Without the handover (REUSE_PORT=false, the "naive" rollout), the new pod cannot bind
// until the old one has exited: connections in that gap are refused, and the node's pods
// see errors for as long as the old proxy drains plus the new one's start-up.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
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
	mode := mesh.Mode(env.OneOf("MODE", "sidecar", "sidecar", "node"))
	host, _ := os.Hostname()
	name := env.String("POD_NAME", host)
	nodeName := env.String("NODE_NAME", "")
	if mode == mesh.Node {
		name = env.Required("NODE_NAME")
	}
	// A node proxy binds the node's address only (LISTEN_HOST), not every host interface.
	listenHost := env.String("LISTEN_HOST", "")
	defaultOutbound := "127.0.0.1:15001"
	if mode == mesh.Node {
		defaultOutbound = net.JoinHostPort(listenHost, "15001")
	}
	outboundAddr := env.Addr("OUTBOUND", defaultOutbound)
	inboundPort := env.Int("INBOUND_PORT", 15006, 1, 65535)
	adminAddr := env.Addr("ADMIN", net.JoinHostPort(listenHost, "15020"))
	namespace := env.String("NAMESPACE", "")
	watchNamespace := namespace
	nodeProxies := ""
	appAddr := ""
	if mode == mesh.Sidecar {
		appAddr = env.Addr("APP", "127.0.0.1:8080")
		if namespace == "" {
			env.Required("NAMESPACE")
		}
	} else {
		watchNamespace = ""                        // a node proxy serves every namespace
		nodeProxies = env.Required("NODE_PROXIES") // namespace/service of the node proxies
	}
	reusePort := env.Bool("REUSE_PORT", mode == mesh.Node)
	drain := env.Duration("DRAIN", 3*time.Second)
	grace := env.Duration("GRACE", 10*time.Second)
	timeout := env.Duration("TIMEOUT", 10*time.Second)
	retries := env.Int("RETRIES", 0, 0, 10)
	apiServer := env.String("API_SERVER", "")
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watcher.Run(ctx)

	proxy := &mesh.Proxy{
		Mode: mode, Name: name, NodeName: nodeName, DefaultNamespace: namespace, Store: store, AppAddr: appAddr,
		NodeProxies: nodeProxies, InboundPort: inboundPort, Timeout: timeout, Retries: retries,
	}
	proxy.Init()

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
		proxy.Metrics.Write(w, store.Count())
	})

	inboundAddr := net.JoinHostPort(listenHost, strconv.Itoa(inboundPort))
	addrs := []string{outboundAddr, inboundAddr, adminAddr}
	var listeners []net.Listener
	for _, addr := range addrs {
		ln, err := serve.Listen(addr, reusePort)
		if err != nil {
			config.Fail("meshproxy", fmt.Errorf("listening on %s: %w", addr, err))
		}
		listeners = append(listeners, ln)
	}
	servers := []serve.Server{
		mesh.NewServer(proxy.Outbound()),
		mesh.NewServer(proxy.Inbound()),
		&http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second},
	}
	fmt.Fprintf(os.Stderr, "meshproxy %s: mode=%s name=%s outbound=%s inbound=%s reuseport=%v\n", version, mode, name, outboundAddr, inboundAddr, reusePort)
	group := &serve.Group{Servers: servers, Drain: drain, Grace: grace, Draining: &draining}
	if err := group.Serve(listeners); err != nil {
		fmt.Fprintf(os.Stderr, "meshproxy: %v\n", err)
		os.Exit(1)
	}
	proxy.Close()
}
