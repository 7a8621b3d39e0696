package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"patternbench.local/images/internal/applog"
	"patternbench.local/images/internal/chainrpc"
)

// serveApp serves an app (HTTP/1.1 and gRPC on one port) on loopback; its address and server.
func serveApp(t *testing.T, name string, downstreams ...string) (string, *http.Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{s: settings{Service: name, Pod: name + "-0", Downstreams: downstreams, Timeout: 2 * time.Second},
		log: applog.NewWriter(&bytes.Buffer{}, name+"-0", ""), client: http.DefaultClient}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.root)
	srv := &http.Server{Handler: a.withGRPC(mux), Protocols: http1AndH2C()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

func client(t *testing.T, addr string) *grpc.ClientConn {
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(chainrpc.Subtype)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGRPCCallFollowsTheChainAndHTTPStillAnswers(t *testing.T) {
	b, _ := serveApp(t, "b")
	a, _ := serveApp(t, "a", b)
	ans := &Answer{}
	if err := client(t, a).Invoke(context.Background(), chainrpc.CallMethod, &chainrpc.CallRequest{RequestID: "r-1"}, ans); err != nil {
		t.Fatal(err)
	}
	if ans.Service != "a" || ans.RequestID != "r-1" || len(ans.Downstream) != 1 || ans.Downstream[0].Answer == nil ||
		ans.Downstream[0].Answer.Service != "b" || ans.Downstream[0].Answer.RequestID != "r-1" || ans.Downstream[0].Status != 200 {
		t.Fatalf("answer %+v", ans)
	}
	resp, err := http.Get("http://" + a + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 on the same port: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestGRPCWatchStreamsAlongTheChainAndEndsWhereItBreaks(t *testing.T) {
	b, bServer := serveApp(t, "b")
	a, _ := serveApp(t, "a", b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client(t, a).NewStream(ctx, chainrpc.WatchDesc, chainrpc.WatchMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.SendMsg(&chainrpc.CallRequest{RequestID: "w-1", IntervalMS: 20}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	for i := 0; i < 3; i++ {
		ans := &Answer{}
		if err := stream.RecvMsg(ans); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if ans.Service != "a" || len(ans.Downstream) != 1 || ans.Downstream[0].Answer == nil || ans.Downstream[0].Answer.Service != "b" {
			t.Fatalf("message %d: %+v", i, ans)
		}
	}
	bServer.Close() // the downstream goes away: the stream breaks, and says where
	for {
		err = stream.RecvMsg(&Answer{})
		if err != nil {
			break
		}
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), b) {
		t.Fatalf("the broken stream ended with %v", err)
	}
}
