package cmd

import (
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"
)

// newLogger returns a slog logger at level ("debug", "info", "warn", "error")
// writing text to a terminal and JSON otherwise, unless format says which.
func newLogger(level, format string, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
