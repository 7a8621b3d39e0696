package main

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// conn is one keep-alive client connection: a fixed request written as bytes, the answer
// parsed by fasthttp (cheap, so the generator's own cost stays small beside the proxies').
type conn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	resp fasthttp.Response
}

func dial(addr string) (*conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{addr: addr, c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (c *conn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// do sends one request and reads the whole answer; non-200 is an error. A connection the
// server closes (or that failed) is redialled on the next call.
func (c *conn) do(request []byte) error {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
		if err != nil {
			return err
		}
		c.c = nc
		c.br.Reset(nc)
	}
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(request); err != nil {
		c.close()
		return err
	}
	c.resp.Reset()
	if err := c.resp.Read(c.br); err != nil {
		c.close()
		return err
	}
	if c.resp.ConnectionClose() {
		c.close()
	}
	if code := c.resp.StatusCode(); code != 200 {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

type openResult struct {
	latencies   []float64 // ms, from each request's intended start to its last byte
	failed      int64
	maxInFlight int64
	elapsed     time.Duration
}

// maxConns caps the open loop's connections; beyond it, due requests queue (and their
// latency, counted from the due time, shows it).
const maxConns = 512

// openLoop sends rate requests/s for d on a smooth schedule (request i is due at
// start + i/rate, whatever the answers' speed) and measures each latency from its due time,
// so queueing behind a slow answer counts (no coordinated omission). Due requests go to a
// shared queue served by keep-alive connections; a new connection opens when none is idle.
func openLoop(addr string, request []byte, rate int, d time.Duration) openResult {
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	jobs := make(chan time.Time, n)
	var mu sync.Mutex
	res := openResult{latencies: make([]float64, 0, n)}
	var wg sync.WaitGroup
	var idle, inFlight, maxInFlight atomic.Int64
	workers := 0
	work := func() {
		defer wg.Done()
		c := &conn{addr: addr, br: bufio.NewReaderSize(nil, 16<<10)}
		defer c.close()
		lat := make([]float64, 0, 1024)
		var failed int64
		for due := range jobs {
			idle.Add(-1)
			err := c.do(request)
			ms := float64(time.Since(due).Nanoseconds()) / 1e6
			if err != nil {
				failed++
			} else {
				lat = append(lat, ms)
			}
			inFlight.Add(-1)
			idle.Add(1)
		}
		mu.Lock()
		res.latencies = append(res.latencies, lat...)
		res.failed += failed
		mu.Unlock()
	}

	runtime.LockOSThread() // the pacer sleeps in nanosleep on its own thread: µs precision
	defer runtime.UnlockOSThread()
	_ = setTimerSlack(1000)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		sleepUntil(due)
		if idle.Load() <= 0 && workers < maxConns {
			workers++
			idle.Add(1)
			wg.Add(1)
			go work()
		}
		if v := inFlight.Add(1); v > maxInFlight.Load() {
			maxInFlight.Store(v)
		}
		jobs <- due
	}
	close(jobs)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.maxInFlight = maxInFlight.Load()
	return res
}

func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

func setTimerSlack(ns int) error {
	const prSetTimerslack = 29
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, uintptr(ns), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// closedLoop runs conns connections, each sending its next request as soon as the last
// answer arrived, for d; it returns completed requests per second and the failures.
func closedLoop(addr string, request []byte, conns int, d time.Duration) (float64, int64) {
	var done, failed atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &conn{addr: addr, br: bufio.NewReaderSize(nil, 16<<10)}
			defer c.close()
			for !stop.Load() {
				if err := c.do(request); err != nil {
					failed.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				done.Add(1)
			}
		}()
	}
	time.Sleep(d)
	n := done.Load()
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	return float64(n) / elapsed.Seconds(), failed.Load()
}
