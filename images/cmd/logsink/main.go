// Command logsink receives log batches (POST /ingest, newline-separated lines, from our own
// agent; POST /v1/logs, OTLP/HTTP logs in JSON or protobuf, from agents that speak
// OpenTelemetry, each record's body counted as one line) and answers GET /stats with what
// arrived: received, missing, duplicated and delivery lag, per source pod and in total, since
// the last POST /mark (a trial's window). In memory only; experiments never upgrade it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"patternbench.local/images/internal/config"
	"patternbench.local/images/internal/serve"
	"patternbench.local/images/internal/sink"
)

var version = "dev"

// maxIngestBody bounds one batch from our agent (500 lines of ~150 bytes by default).
const maxIngestBody = 8 << 20

func main() {
	if config.VersionRequested("logsink", version) {
		return
	}
	env := config.FromOS()
	listen := env.Addr("LISTEN", ":8080")
	// The run's token: only lines that carry it are counted, so a pod that is not the run's
	// cannot add lines, fill gaps or forge "nothing lost".
	token := env.String("TOKEN", "")
	if env.Err != nil {
		config.Fail("logsink", env.Err)
	}
	stats := sink.New(token)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ingest", func(w http.ResponseWriter, r *http.Request) {
		scanner := bufio.NewScanner(http.MaxBytesReader(w, r.Body, maxIngestBody))
		scanner.Buffer(make([]byte, 64*1024), 1<<20)
		lines := 0
		for scanner.Scan() {
			if len(scanner.Bytes()) > 0 {
				stats.Add(scanner.Bytes())
				lines++
			}
		}
		if err := scanner.Err(); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				http.Error(w, fmt.Sprintf("batch over %d bytes", maxIngestBody), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		stats.BatchDone(lines)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/logs", sink.OTLPLogsHandler(stats))
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(stats.Snapshot())
	})
	// A new window: a trial on a deployment that earlier trials used counts its own lines.
	mux.HandleFunc("POST /mark", func(w http.ResponseWriter, _ *http.Request) {
		stats.Mark()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	ln, err := serve.Listen(listen, false)
	if err != nil {
		config.Fail("logsink", &config.Error{Setting: "LISTEN", Problem: err.Error()})
	}
	// A client that sends its body a byte at a time is cut off, not waited for.
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	group := &serve.Group{Servers: []serve.Server{server}, Drain: 0, Grace: 5 * time.Second}
	if err := group.Serve([]net.Listener{ln}); err != nil {
		fmt.Fprintf(os.Stderr, "logsink: %v\n", err)
		os.Exit(1)
	}
}
