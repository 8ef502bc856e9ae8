package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/jsctl/jsctl/boltstore"
	"github.com/jsctl/jsctl/embedded"
	"github.com/jsctl/jsctl/event"
)

// doctorReport is what `jsctl doctor` found.
type doctorReport struct {
	Ledger         string         `json:"ledger"`
	LedgerBytes    int64          `json:"ledger_bytes"`
	Events         int            `json:"events"`
	ByStatus       map[string]int `json:"by_status"`
	Tombstones     int            `json:"tombstones"`
	Stream         string         `json:"stream"`
	StreamMessages uint64         `json:"stream_messages"`
	StreamLastSeq  uint64         `json:"stream_last_sequence"`
	Problems       []string       `json:"problems"`
	Notes          []string       `json:"notes"`
}

func newDoctorCommand() *cobra.Command {
	o := &serveOptions{}
	var output string
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check the ledger and the stream offline, and their agreement",
		Long: `Check a stopped jsctl's data dir: bbolt's full consistency check of the
ledger, counts by status, and that every published event's message is in the
stream at its sequence with its correlation ID as msg-id. It reads the files
offline: stop jsctl first. Exits 1 when it finds a problem.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := LoadConfig(o.configFile, os.Environ(), o.flagValues(c.Flags()))
			if err != nil {
				return err
			}
			report, err := doctor(runContext(c), cfg)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else {
				report.print(c.OutOrStdout())
			}
			if len(report.Problems) > 0 {
				return &ExitError{Code: 1, Err: fmt.Errorf("%d problems found", len(report.Problems))}
			}
			return nil
		},
	}
	o.AddFlags(c.Flags())
	c.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return c
}

func doctor(ctx context.Context, cfg Config) (*doctorReport, error) {
	in, err := boltstore.Inspect(cfg.LedgerPath())
	if err != nil {
		return nil, err
	}
	r := &doctorReport{Ledger: in.Path, LedgerBytes: in.Bytes, Events: in.Events, ByStatus: map[string]int{}, Tombstones: in.Tombstones, Stream: cfg.NATS.Stream, Problems: in.Problems}
	for s, n := range in.ByStatus {
		r.ByStatus[s.String()] = n
	}
	if n := in.ByStatus[event.StatusAccepted]; n > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d events are ACCEPTED (not yet published): the next start publishes them", n))
	}
	if in.Schema == 1 {
		r.Notes = append(r.Notes, "ledger schema 1: the next start upgrades it to schema 2 (retention)")
	}
	if len(in.Problems) > 0 {
		return r, nil
	}

	srv := embedded.New(cfg.JetStreamDir())
	srv.Logger = slog.New(slog.DiscardHandler)
	srv.MaxPayload = int32(cfg.Limits.MaxPayloadBytes + cfg.Limits.MaxHeaderBytes + 64<<10)
	if err := srv.Open(); err != nil {
		return nil, fmt.Errorf("open the JetStream store: %w", err)
	}
	defer srv.Close()
	nc, err := srv.Connect("jsctl-doctor")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, cfg.NATS.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if len(in.Published) > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("stream %s does not exist; %d published events would be published again at start", cfg.NATS.Stream, len(in.Published)))
		}
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.NATS.Stream, err)
	}
	st := stream.CachedInfo().State
	r.StreamMessages, r.StreamLastSeq = st.Msgs, st.LastSeq
	seqs := make([]uint64, 0, len(in.Published))
	for seq := range in.Published {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	beyond, gone := 0, 0
	for _, seq := range seqs {
		id := in.Published[seq]
		if seq > st.LastSeq {
			beyond++
			continue
		}
		msg, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			gone++ // removed by the stream's limits
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read stream sequence %d: %w", seq, err)
		}
		if got := msg.Header.Get(jetstream.MsgIDHeader); got != id.String() {
			r.Problems = append(r.Problems, fmt.Sprintf("stream sequence %d holds message %q, the ledger says event %s", seq, got, id))
		}
	}
	if beyond > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d published events are beyond the stream's last sequence %d (a lost tail): the next start publishes them again", beyond, st.LastSeq))
	}
	if gone > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d published events are no longer in the stream (removed by its limits)", gone))
	}
	return r, nil
}

func (r *doctorReport) print(w io.Writer) {
	fmt.Fprintf(w, "ledger  %s: %d events in %d bytes\n", r.Ledger, r.Events, r.LedgerBytes)
	for _, s := range []event.Status{event.StatusAccepted, event.StatusPublished, event.StatusDelivered, event.StatusProcessed, event.StatusFailed} {
		if n := r.ByStatus[s.String()]; n > 0 {
			fmt.Fprintf(w, "        %-10s %d\n", s, n)
		}
	}
	if r.Tombstones > 0 {
		fmt.Fprintf(w, "        %d expired events remembered (tombstones)\n", r.Tombstones)
	}
	if r.StreamLastSeq > 0 || r.StreamMessages > 0 {
		fmt.Fprintf(w, "stream  %s: %d messages, last sequence %d\n", r.Stream, r.StreamMessages, r.StreamLastSeq)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note    %s\n", n)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "OK      ledger consistent; every published event is in the stream with its msg-id")
		return
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "PROBLEM %s\n", p)
	}
}
