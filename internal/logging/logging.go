// Package logging builds the structured logger (logr over log/slog) the
// Stevedore binaries log through.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
)

// Options select the level and format of the logs.
type Options struct {
	// Level is one of debug, info, warn, error.
	Level string
	// Format is logfmt or json.
	Format string
}

// New returns a logger writing to w, or an error naming the bad option.
func New(w io.Writer, opts Options) (logr.Logger, error) {
	var level slog.Level
	switch strings.ToLower(opts.Level) {
	case "debug":
		level = slog.LevelDebug
	case "", "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return logr.Discard(), fmt.Errorf("log level %q: want one of debug, info, warn, error", opts.Level)
	}
	ho := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(opts.Format) {
	case "", "logfmt":
		h = slog.NewTextHandler(w, ho)
	case "json":
		h = slog.NewJSONHandler(w, ho)
	default:
		return logr.Discard(), fmt.Errorf("log format %q: want logfmt or json", opts.Format)
	}
	return logr.FromSlogHandler(h), nil
}
