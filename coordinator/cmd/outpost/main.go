// Command outpost is the admin command line of an Outpost coordinator. It only
// wires the process to package cli, which holds the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/outposthq/outpost/coordinator/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
