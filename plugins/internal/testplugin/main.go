// Command testplugin is a plugin that misbehaves on request, for the tests
// of the plugin host: the item id chooses what Apply does.
//
//	hang   block forever, ignoring the context
//	crash  exit the process in the middle of the call
//	fail   return an error
//	log    log a record and succeed
//	reboot-me  succeed, saying a reboot is required
//	crash-once, hang-once
//	       crash or hang the first time (a marker in the root remembers),
//	       succeed after
//
// Anything else succeeds with changed=true. Without a root (or with one that is
// not a directory) every item scans compliant; with one, an item is compliant once Apply succeeded for
// it (a file applied-<id> in the root), so that a host drives Apply.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

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
		compliant := true
		if root := req.GetRoot(); isDir(root) {
			_, err := os.Stat(filepath.Join(root, "applied-"+it.GetId()))
			compliant = err == nil
		}
		resp.Items = append(resp.Items, &proto.ItemState{Id: it.GetId(), Compliant: compliant, Applicable: true})
	}
	return resp, nil
}

func (p *testPlugin) Apply(_ context.Context, req *proto.ApplyRequest) (*proto.ApplyResponse, error) {
	root, id := req.GetRoot(), req.GetItem().GetId()
	once := func() bool { // true the first time only
		marker := filepath.Join(root, "misbehaved-"+id)
		if _, err := os.Stat(marker); err == nil {
			return false
		}
		os.WriteFile(marker, nil, 0o600)
		return true
	}
	switch id {
	case "hang-once":
		if once() {
			select {}
		}
	case "crash-once":
		if once() {
			os.Exit(3)
		}
	case "hang":
		select {}
	case "crash":
		os.Exit(3)
	case "fail":
		return nil, errors.New("item fail is refused on purpose")
	case "refuse":
		return nil, fmt.Errorf("item refuse asks for what this plugin never does: %w", plugins.Refusal("not allowed here"))
	case "log":
		p.logger.Warn("hello from the plugin", "item", req.GetItem().GetId())
	}
	if isDir(root) {
		if err := os.WriteFile(filepath.Join(root, "applied-"+id), nil, 0o600); err != nil {
			return nil, err
		}
	}
	return &proto.ApplyResponse{Changed: true, RebootRequired: id == "reboot-me", Message: "applied " + id}, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return p != "" && err == nil && fi.IsDir()
}

func main() {
	plugins.Serve(&testPlugin{logger: plugins.Logger()})
}
