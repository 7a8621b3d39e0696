package h2watch

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

func frame(typ byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[5:], stream)
	return append(b, payload...)
}

// Frames split anywhere across reads: the GOAWAY, its last stream and code, and the resets are read.
func TestParseAcrossReads(t *testing.T) {
	goaway := make([]byte, 8)
	binary.BigEndian.PutUint32(goaway[0:], 7)
	binary.BigEndian.PutUint32(goaway[4:], 2)
	var all []byte
	all = append(all, frame(0x4, 0, make([]byte, 6))...)            // SETTINGS
	all = append(all, frame(0x0, 1, []byte("hello world"))...)      // DATA
	all = append(all, frame(frameRSTStream, 3, make([]byte, 4))...) // RST_STREAM
	all = append(all, frame(frameGoAway, 0, append(goaway, []byte("debug")...))...)
	all = append(all, frame(frameRSTStream, 5, make([]byte, 4))...)
	for step := 1; step <= len(all); step++ {
		c := &Conn{}
		for i := 0; i < len(all); i += step {
			c.parse(all[i:min(i+step, len(all))])
		}
		if c.rec.RSTStreams != 2 || c.rec.GoAwayT == 0 || c.rec.GoAwayLastStream != 7 || c.rec.GoAwayCode != 2 || c.rec.ReadyT == 0 {
			t.Fatalf("step %d: %+v", step, c.rec)
		}
	}
}

// A real HTTP/2 server shutting down: the client side sees its GOAWAY, then the connection's
// end; the channel's next call learns that, and how long the channel took to reconnect.
func TestGoAwayOnShutdownAndReplacement(t *testing.T) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	var mu sync.Mutex
	var ended []Record
	w := &Watcher{Prefix: "test", OnEnd: func(r Record) { mu.Lock(); ended = append(ended, r); mu.Unlock() }}
	dial := w.Dial("ch", nil)
	tr := &http.Transport{Protocols: &p, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}
	client := &http.Client{Transport: tr}
	get := func() {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(ended)
		mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if len(ended) != 1 || ended[0].GoAwayT == 0 || ended[0].ID != "test#1" {
		t.Fatalf("ended: %+v", ended)
	}
	mu.Unlock()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv2 := &http.Server{Protocols: &p, Handler: srv.Handler}
	go srv2.Serve(ln2)
	defer srv2.Close()
	resp, err := client.Get("http://" + ln2.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ended2 := w.Ended("ch")
	if len(ended2) != 1 || ended2[0].ID != "test#1" || !ended2[0].GoAway || ended2[0].End == EndStopped || ended2[0].ReconnectS == nil || *ended2[0].ReconnectS < 0 {
		t.Fatalf("the channel's ended connections: %+v", ended2)
	}
	if again := w.Ended("ch"); len(again) != 0 {
		t.Fatalf("said twice: %+v", again)
	}
	w.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(ended) != 2 || ended[1].End != EndStopped || ended[1].ID != "test#2" {
		t.Fatalf("at the end: %+v", ended)
	}
	if len(w.Ended("ch")) != 0 {
		t.Fatal("a connection stopped at the end is no replacement")
	}
}
