package serve

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// FastServer runs a fasthttp handler as a Group member: once keep-alives are off (the
// drain), every answer says "Connection: close" and its connection ends after it.
type FastServer struct {
	srv     *fasthttp.Server
	closing atomic.Bool
}

// NewFast wraps handler in a fasthttp server with the proxy's settings: it adds no headers
// of its own (Server, Date, Content-Type pass through from upstream as they are) and gives
// a client 5 s to send a request, 60 s idle between requests.
func NewFast(handler fasthttp.RequestHandler) *FastServer {
	f := &FastServer{}
	f.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			handler(ctx)
			if f.closing.Load() {
				ctx.Response.SetConnectionClose()
			}
		},
		ReadTimeout:                   5e9,
		IdleTimeout:                   60e9,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		DisableHeaderNamesNormalizing: false,
	}
	return f
}

func (f *FastServer) Serve(ln net.Listener) error { return f.srv.Serve(rawListener{ln}) }

func (f *FastServer) SetKeepAlivesEnabled(on bool) { f.closing.Store(!on) }

// Shutdown closes the listener and waits for open connections to finish, until ctx ends.
func (f *FastServer) Shutdown(ctx context.Context) error { return f.srv.ShutdownWithContext(ctx) }
