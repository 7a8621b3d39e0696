// Package applog is the app's log line: one JSON object per request, numbered per process,
// so the log sink can count exactly which lines arrived, went missing or came twice.
package applog

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Line is one request's log entry.
type Line struct {
	Pod       string    `json:"pod"`
	Token     string    `json:"token,omitempty"` // the run's token: the sink counts only lines that carry it
	Instance  string    `json:"instance"`        // per process: a restarted container starts a new sequence
	Seq       uint64    `json:"seq"`             // 1, 2, 3, ... with no gap within an instance
	RequestID string    `json:"request_id"`
	Time      time.Time `json:"ts"`
}

// Writer numbers and writes lines; one Write call per line, so a tailer never sees half
// of one unless the process dies mid-write.
type Writer struct {
	mu       sync.Mutex
	out      io.Writer
	pod      string
	token    string
	instance string
	seq      uint64
}

// NewWriter starts a new instance with a random id; every line carries `token`.
func NewWriter(out io.Writer, pod, token string) *Writer {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Writer{out: out, pod: pod, token: token, instance: hex.EncodeToString(b)}
}

// Log writes the next line and returns it.
func (w *Writer) Log(requestID string) (Line, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	line := Line{Pod: w.pod, Token: w.token, Instance: w.instance, Seq: w.seq, RequestID: requestID, Time: time.Now().UTC()}
	data, _ := json.Marshal(line)
	_, err := w.out.Write(append(data, '\n'))
	return line, err
}

// Parse reads one log line.
func Parse(raw []byte) (Line, error) {
	var l Line
	err := json.Unmarshal(raw, &l)
	return l, err
}
