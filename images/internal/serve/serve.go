// Package serve runs HTTP servers that drain gracefully, optionally on SO_REUSEPORT
// listeners so a replacement process can take over a port before the old one lets go.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// Listen opens a TCP listener; with reusePort, SO_REUSEPORT lets a second process bind the
// same address while this one still listens (the node-proxy handover).
func Listen(addr string, reusePort bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Draining is set once a shutdown signal arrived: readiness probes fail from then on.
type Draining struct{ flag atomic.Bool }

// Set marks the process as draining.
func (d *Draining) Set() { d.flag.Store(true) }

// Is reports whether the process is draining.
func (d *Draining) Is() bool { return d.flag.Load() }

// Server is what a Group runs: *http.Server, or a FastServer.
type Server interface {
	Serve(net.Listener) error
	// SetKeepAlivesEnabled(false): answers from now on close their connection.
	SetKeepAlivesEnabled(bool)
	Shutdown(context.Context) error
}

// Group is a set of servers shut down together.
type Group struct {
	Servers []Server
	// Drain: how long to keep serving after the signal (endpoints take time to drop the pod).
	Drain time.Duration
	// Grace: how long in-flight requests get once the listeners are closed.
	Grace    time.Duration
	Draining *Draining
	OnSignal func()
}

// Serve starts each server on its listener and blocks until SIGTERM/SIGINT and a graceful
// shutdown, or until a server fails.
func (g *Group) Serve(listeners []net.Listener) error {
	errs := make(chan error, len(g.Servers))
	for i, srv := range g.Servers {
		srv := srv
		ln := listeners[i]
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errs:
		return err
	case <-stop:
	}
	return g.Shutdown()
}

// Shutdown: mark draining, keep serving for Drain, then stop accepting and wait up to Grace
// for in-flight requests.
func (g *Group) Shutdown() error {
	if g.Draining != nil {
		g.Draining.Set()
	}
	if g.OnSignal != nil {
		g.OnSignal()
	}
	// Answers from now on say "Connection: close", so keep-alive clients move to a new
	// connection (a successor proxy, or another pod) while we still serve.
	for _, srv := range g.Servers {
		srv.SetKeepAlivesEnabled(false)
	}
	time.Sleep(g.Drain)
	ctx, cancel := context.WithTimeout(context.Background(), g.Grace)
	defer cancel()
	var first error
	for _, srv := range g.Servers {
		if err := srv.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}
