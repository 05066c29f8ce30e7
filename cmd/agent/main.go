// Command agent is Stevedore's data plane: `agent sidecar` runs next to
// Prometheus (block shipper + StoreAPI proxy), `agent store` serves the blocks
// of a bucket (store gateway). Both speak the Thanos StoreAPI.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/stevedore-dev/stevedore/internal/version"
)

const usage = `Usage: agent COMMAND [FLAGS]

Commands:
  sidecar   run next to Prometheus: ship TSDB blocks to object storage and serve
            Prometheus data over the Thanos StoreAPI
  store     serve the blocks of an object storage bucket over the Thanos StoreAPI
  version   print the version

Run 'agent COMMAND -h' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "sidecar":
		err = runSidecar(ctx, args[1:], stderr)
	case "store":
		err = runStore(ctx, args[1:], stderr)
	case "version", "--version", "-version":
		_, _ = fmt.Fprintf(stdout, "agent %s\n", version.Get())
		return 0
	case "-h", "--help", "help":
		_, _ = fmt.Fprint(stdout, usage)
		return 0
	default:
		_, _ = fmt.Fprintf(stderr, "agent: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		_, _ = fmt.Fprintf(stderr, "agent %s: %v\n", args[0], err)
		return 2
	default:
		_, _ = fmt.Fprintf(stderr, "agent %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a bad flag or flag combination: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
