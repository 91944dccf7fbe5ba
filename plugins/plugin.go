// Package plugins is the one contract between the agent and its plugins
// (package, patch, registry): the go-plugin handshake, the Plugin interface
// every plugin kind implements, Serve for a plugin's main, and Open, the host
// side that runs a plugin binary as a supervised subprocess.
//
// It is the same for every plugin kind, in the manner of hashicorp/nomad's
// plugins/. It holds no item logic: that lives in the kind's own package
// (plugins/packages, ...). The wire types are in plugins/proto.
package plugins

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/plugins/proto"
)

// Handshake is what the agent and a plugin binary must agree on before they
// talk. ProtocolVersion changes only when the contract breaks. The cookie is
// not a secret: it stops a plugin binary that is started by hand from
// waiting for a host that will never come.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "OUTPOST_PLUGIN",
	MagicCookieValue: "b3f1c4e2-6a0d-4c1e-9d57-outpost-plugin-v1",
}

// PluginName is the one entry in the go-plugin PluginSet. Every binary
// serves exactly one kind; the kind is learnt from Describe.
const PluginName = "item"

// Plugin is what every plugin kind implements. The calls mirror the gRPC
// service in plugins/proto. An error is returned to the agent as the call's
// failure; it should say what was wrong ("archive entry ../x escapes the
// prefix"), not just that something failed.
type Plugin interface {
	Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error)
	Scan(context.Context, *proto.ScanRequest) (*proto.ScanResponse, error)
	Apply(context.Context, *proto.ApplyRequest) (*proto.ApplyResponse, error)
}

// GRPCPlugin is the go-plugin glue: on the plugin side it serves Impl, on the
// host side it hands out a proto.PluginClient. Only gRPC is supported.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin // nil on the host side
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterPluginServer(s, &grpcServer{impl: p.Impl})
	return nil
}

// GRPCClient returns a proto.PluginClient on the connection to the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return proto.NewPluginClient(cc), nil
}

type grpcServer struct {
	proto.UnimplementedPluginServer
	impl Plugin
}

func (s *grpcServer) Describe(ctx context.Context, req *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return s.impl.Describe(ctx, req)
}

func (s *grpcServer) Scan(ctx context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
	return s.impl.Scan(ctx, req)
}

func (s *grpcServer) Apply(ctx context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	res, err := s.impl.Apply(ctx, req)
	if errors.Is(err, ErrRefused) {
		// Told apart from a failure, so that the agent does not try again.
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return res, err
}

// ErrRefused is wrapped by a plugin's errors about an item it will never
// apply as it stands (a path it may not touch, say): trying again cannot
// help, so the agent does not, and reports the refusal at once.
var ErrRefused = errors.New("refused")

// Refusal is an error that says text and is an ErrRefused.
func Refusal(text string) error { return refusal(text) }

type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrRefused }

// Serve serves impl to the agent that started this process and returns when
// the agent closes the connection. It is what a plugin's main calls; started
// by hand, it prints that it is a plugin and exits non-zero.
func Serve(impl Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logging.HCLog(Logger()),
	})
}

// stderr is the process's stderr as it was at start. go-plugin points
// os.Stderr elsewhere once Serve runs; the host reads log lines from the
// original one.
var stderr = os.Stderr

// Logger returns the logger a plugin process logs with: JSON lines on its
// stderr, which the host reads and passes to its own slog logger with their
// level and attributes. The host decides what is shown.
func Logger() *slog.Logger {
	return logging.NewHCLogJSON(stderr, logging.LevelTrace)
}
