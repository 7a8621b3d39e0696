// Command logagent is the logging agent. As a sidecar it tails the app's log file on a
// shared volume; as a node agent it tails the node's /var/log/pods (CRI format, through the
// kubelet's rotations) with a checkpoint on the node, so a replaced agent resumes where the
// old one stopped. It ships batches to logsink and flushes on SIGTERM.
package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"patternbench.local/images/internal/config"
	"patternbench.local/images/internal/logs"
)

var version = "dev"

func main() {
	if config.VersionRequested("logagent", version) {
		return
	}
	env := config.FromOS()
	mode := env.OneOf("MODE", "sidecar", "sidecar", "node")
	sinkURL := env.Required("SINK_URL")
	if u, err := url.Parse(sinkURL); sinkURL != "" && (err != nil || u.Scheme != "http" || u.Host == "") {
		env.Err = &config.Error{Setting: "SINK_URL", Problem: fmt.Sprintf("%q is not an http:// URL", sinkURL)}
	}
	batch := env.Int("BATCH", 500, 1, 100000)
	poll := env.Duration("POLL", 100*time.Millisecond)
	grace := env.Duration("GRACE", 10*time.Second)
	var globs []string
	var format logs.Format
	var checkpoint string
	var drain time.Duration
	if mode == "sidecar" {
		globs = env.List("LOG_GLOB")
		if len(globs) == 0 {
			env.Required("LOG_GLOB")
		}
		format = logs.Raw
		checkpoint = env.String("CHECKPOINT", "")
		drain = env.Duration("DRAIN", 8*time.Second) // outlive the app's own drain
	} else {
		podsDir := env.String("PODS_DIR", "/var/log/pods")
		containers := env.List("CONTAINERS")
		if len(containers) == 0 {
			containers = []string{"app"}
		}
		namespaces := env.List("NAMESPACES")
		if len(namespaces) == 0 {
			namespaces = []string{"*"}
		}
		for _, ns := range namespaces {
			for _, c := range containers {
				globs = append(globs, filepath.Join(podsDir, ns+"_*", c, "*.log"))
			}
		}
		format = logs.CRI
		checkpoint = env.String("CHECKPOINT", "/var/lib/logagent/checkpoint.json")
		drain = env.Duration("DRAIN", 0)
		if info, err := os.Stat(podsDir); err != nil || !info.IsDir() {
			env.Err = &config.Error{Setting: "PODS_DIR", Problem: fmt.Sprintf("%q is not a readable directory", podsDir)}
		}
	}
	if env.Err != nil {
		config.Fail("logagent", env.Err)
	}
	start := map[string]logs.Position{}
	if checkpoint != "" {
		var err error
		if err = os.MkdirAll(filepath.Dir(checkpoint), 0o755); err == nil {
			start, err = logs.LoadCheckpoint(checkpoint)
		}
		if err != nil {
			config.Fail("logagent", &config.Error{Setting: "CHECKPOINT", Problem: err.Error()})
		}
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	agent := &logs.Agent{
		Tailer:     logs.NewTailer(globs, format, start),
		Shipper:    &logs.Shipper{URL: sinkURL, Client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}},
		Checkpoint: checkpoint,
		Batch:      batch,
		Poll:       poll,
		Logf:       logf,
	}
	logf("logagent %s: mode=%s globs=%v checkpoint=%q resumed=%d files", version, mode, globs, checkpoint, len(start))
	stop := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; close(stop) }()
	err := agent.Run(context.Background(), stop, drain, grace)
	agent.Tailer.Close()
	logf("logagent: shipped %d records", agent.Shipped)
	if err != nil {
		logf("logagent: %v", err)
		os.Exit(1)
	}
}
