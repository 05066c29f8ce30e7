package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestSidecarFlagErrors checks that bad flags are usage errors naming the
// flag, found before anything starts.
func TestSidecarFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--prometheus.url=localhost:9090"}, "--prometheus.url"},
		{[]string{"--prometheus.url=ftp://x"}, "--prometheus.url"},
		{[]string{"--hash-func=md5"}, "--hash-func"},
		{[]string{"--min-time=yesterday"}, "--min-time"},
		{[]string{"--prometheus.ready_timeout=0s"}, "--prometheus.ready_timeout"},
		{[]string{"--shipper.upload-concurrency=0"}, "--shipper.upload-concurrency"},
		{[]string{"--shipper.sync-interval=-1s"}, "--shipper.sync-interval"},
		{[]string{"--reloader.config-envsubst-file=out.yml"}, "--reloader.config-envsubst-file"},
		{[]string{"--objstore.config=a", "--objstore.config-file=b"}, "not both"},
		{[]string{"--objstore.config=type: NOPE\nconfig: {}\n"}, "bucket"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
	} {
		err := runSidecar(context.Background(), tc.args, io.Discard)
		if err == nil || !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("runSidecar(%q) = %v, want a usage error about %s", tc.args, err, tc.want)
		}
	}
}
