// Package chainrpc is the demo chain's gRPC service (issue 24), defined once for the app that
// serves it (cmd/app) and the load that calls it (cmd/grpcload): Call, a unary RPC along the
// chain, and Watch, a server stream that stays open. No protoc: the messages are JSON,
// through a codec registered as content-subtype "json" (application/grpc+json).
package chainrpc

import (
	"context"
	"encoding/json"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

const (
	Service     = "patternbench.Chain"
	CallMethod  = "/" + Service + "/Call"
	WatchMethod = "/" + Service + "/Watch"
	Subtype     = "json" // grpc.CallContentSubtype for every call
)

// CallRequest names the request (its id reaches every hop's answer and log line); Watch
// sends one message per IntervalMS.
type CallRequest struct {
	RequestID  string `json:"request_id"`
	IntervalMS int    `json:"interval_ms,omitempty"`
}

// WatchDesc is Watch on the client side.
var WatchDesc = &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}

type codec struct{}

func (codec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (codec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (codec) Name() string                       { return Subtype }

func init() { encoding.RegisterCodec(codec{}) }

// Desc is the service served by call and watch (grpc.Server.RegisterService(Desc(...), impl)).
func Desc(call func(context.Context, *CallRequest) (any, error), watch func(*CallRequest, grpc.ServerStream) error) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: Service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Call", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := &CallRequest{}
			if err := dec(req); err != nil {
				return nil, err
			}
			return call(ctx, req)
		}}},
		Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
			req := &CallRequest{}
			if err := stream.RecvMsg(req); err != nil {
				return err
			}
			return watch(req, stream)
		}}},
	}
}
