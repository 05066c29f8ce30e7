package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		wantStderr string
		wantStdout string
	}{
		{"no command", nil, 2, "Usage: agent COMMAND", ""},
		{"unknown command", []string{"compact"}, 2, `unknown command "compact"`, ""},
		{"version", []string{"version"}, 0, "", "agent "},
		{"help", []string{"--help"}, 0, "", "Commands:"},
		{"unknown flag", []string{"store", "--no-such-flag"}, 2, "flag provided but not defined", ""},
		{"stray argument", []string{"store", "extra"}, 2, "unexpected arguments", ""},
		{"bad log level", []string{"sidecar", "--log.level=loud", "--prometheus.url=http://localhost:9090"}, 2, `log level "loud"`, ""},
		{"relative prometheus url", []string{"sidecar", "--prometheus.url=localhost:9090"}, 2, "--prometheus.url", ""},
		{"both objstore flags", []string{"store", "--objstore.config=type: FILESYSTEM", "--objstore.config-file=/x"}, 2, "not both", ""},
		{"missing objstore file", []string{"store", "--objstore.config-file=/does/not/exist"}, 2, "read --objstore.config-file", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr: %s)", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantStderr)
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tc.wantStdout)
			}
		})
	}
}
