// Command testplugin is a plugin that misbehaves on request, for the tests
// of the plugin host: the item id chooses what Apply does.
//
//	hang   block forever, ignoring the context
//	crash  exit the process in the middle of the call
//	fail   return an error
//	log    log a record and succeed
//
// Anything else succeeds with changed=true.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/outposthq/outpost/plugins"
	"github.com/outposthq/outpost/plugins/proto"
)

type testPlugin struct {
	logger *slog.Logger
}

func (p *testPlugin) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	return &proto.DescribeResponse{Kind: "test", Version: "0.0.1", Capabilities: []string{"misbehave"}}, nil
}

func (p *testPlugin) Scan(_ context.Context, req *proto.ScanRequest) (*proto.ScanResponse, error) {
	resp := &proto.ScanResponse{}
	for _, it := range req.GetItems() {
		resp.Items = append(resp.Items, &proto.ItemState{Id: it.GetId(), Compliant: true, Applicable: true})
	}
	return resp, nil
}

func (p *testPlugin) Apply(_ context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	switch req.GetItem().GetId() {
	case "hang":
		select {}
	case "crash":
		os.Exit(3)
	case "fail":
		return nil, errors.New("item fail is refused on purpose")
	case "log":
		p.logger.Warn("hello from the plugin", "item", req.GetItem().GetId())
	}
	return &proto.ApplyResponse{Changed: true, Message: "applied " + req.GetItem().GetId()}, nil
}

func main() {
	plugins.Serve(&testPlugin{logger: plugins.Logger()})
}
