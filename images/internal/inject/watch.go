package inject

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Watch polls files and loads them again whenever their contents change.
//
// ConfigMap and Secret volumes are updated by the kubelet's atomic writer: the new files go
// to a fresh timestamped directory and the `..data` symlink is swapped to it in one rename,
// the visible names (template.json -> ..data/template.json) never change. So the injector
// neither watches inodes (inotify on the file would stay on the old one) nor trusts mtimes:
// it reads the files through their names every interval and compares their contents, which
// for a few kilobytes costs nothing, and sees the swap on the next poll.
type Watch struct {
	Paths []string
	Every time.Duration
	Load  func(contents [][]byte) error
	Log   *log.Logger

	last    [sha256.Size]byte
	loaded  bool
	lastErr string
}

// Once reads the files and loads them if they changed since the last successful load.
func (w *Watch) Once() (changed bool, err error) {
	contents := make([][]byte, len(w.Paths))
	h := sha256.New()
	for i, p := range w.Paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		contents[i] = data
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	if w.loaded && sum == w.last {
		return false, nil
	}
	if err := w.Load(contents); err != nil {
		return false, err
	}
	w.last, w.loaded = sum, true
	return true, nil
}

// Run polls until ctx ends. A failed read or load keeps what was loaded before (a broken
// ConfigMap update must not stop injection) and is logged once per distinct error.
func (w *Watch) Run(ctx context.Context) {
	ticker := time.NewTicker(w.Every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		_, err := w.Once()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != w.lastErr && msg != "" && w.Log != nil {
			w.Log.Printf("keeping what was loaded before: %v", err)
		}
		w.lastErr = msg
	}
}

// Templates holds the template in use; requests read it without locks.
type Templates struct {
	current atomic.Pointer[Loaded]
	mu      sync.Mutex
	status  TemplateStatus
	Log     *log.Logger
}

// TemplateStatus is what GET /template answers: the version in use and the last reload error.
type TemplateStatus struct {
	Version  string    `json:"version"`
	SHA256   string    `json:"sha256"`
	LoadedAt time.Time `json:"loaded_at"`
	Error    string    `json:"error,omitempty"`
}

// Current is the template in use (nil before the first load).
func (s *Templates) Current() *Loaded { return s.current.Load() }

// Load parses a template file's contents and puts it in use.
func (s *Templates) Load(contents [][]byte) error {
	t, err := ParseTemplate(contents[0])
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.status.Error = err.Error()
		return err
	}
	s.current.Store(t)
	s.status = TemplateStatus{Version: t.Version, SHA256: t.SHA256, LoadedAt: time.Now().UTC()}
	if s.Log != nil {
		s.Log.Printf("template %s (sha256 %.12s) in use", t.Version, t.SHA256)
	}
	return nil
}

// Status is a copy of the current status.
func (s *Templates) Status() TemplateStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Certificates holds the serving certificate; a renewed Secret is picked up like a template.
type Certificates struct {
	current atomic.Pointer[tls.Certificate]
}

// Load parses a certificate and its key (PEM) and puts them in use.
func (c *Certificates) Load(contents [][]byte) error {
	cert, err := tls.X509KeyPair(contents[0], contents[1])
	if err != nil {
		return fmt.Errorf("serving certificate: %v", err)
	}
	c.current.Store(&cert)
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (c *Certificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert := c.current.Load()
	if cert == nil {
		return nil, fmt.Errorf("no serving certificate loaded")
	}
	return cert, nil
}
