// Command loadgen posts one request body to one HTTPS URL over kept-alive connections, as the API
// server sends admission reviews, and prints what it measured as one JSON object.
//
// Two ways to load the server:
//
//   - at saturation (-rate 0): each of -connections connections sends its next request as soon as
//     the last one is answered, for -duration; the figure is requests answered per second;
//   - paced (-rate R): requests start R times a second on a fixed schedule whatever the answers do,
//     each on a free connection (at most -connections); a request's latency runs from when it was
//     due, not from when a connection was free, so a server that falls behind is not flattered.
//
// Only the standard library: it is built once and kept in the cache (localcluster/build.py).
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"
)

type result struct {
	Requests   int     `json:"requests"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
}

type recorder struct {
	mu         sync.Mutex
	latencies  []time.Duration
	errors     int
	firstError string
}

func (r *recorder) add(latency time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errors++
		if r.firstError == "" {
			r.firstError = err.Error()
		}
		return
	}
	r.latencies = append(r.latencies, latency)
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	index := int(float64(len(sorted)) * p)
	if index >= len(sorted) {
		index = len(sorted) - 1
	}
	return float64(sorted[index].Microseconds()) / 1000
}

func client(caFile, certFile, keyFile string, connections int) (*http.Client, error) {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	config := &tls.Config{RootCAs: pool}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	transport := &http.Transport{
		TLSClientConfig:     config,
		MaxConnsPerHost:     connections,
		MaxIdleConnsPerHost: connections,
		IdleConnTimeout:     90 * time.Second,
		// HTTP/1.1, as gunicorn speaks and as the API server then uses.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	return &http.Client{Transport: transport, Timeout: 10 * time.Second}, nil
}

func post(c *http.Client, url string, body []byte) error {
	response, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, response.Body)
	response.Body.Close()
	if err != nil {
		return err
	}
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", response.StatusCode)
	}
	return nil
}

func saturate(c *http.Client, url string, body []byte, connections int, duration time.Duration) *recorder {
	rec := &recorder{}
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < connections; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				started := time.Now()
				err := post(c, url, body)
				rec.add(time.Since(started), err)
			}
		}()
	}
	wg.Wait()
	return rec
}

func paced(c *http.Client, url string, body []byte, connections int, duration time.Duration, rate float64) *recorder {
	rec := &recorder{}
	interval := time.Duration(float64(time.Second) / rate)
	total := int(duration.Seconds() * rate)
	slots := make(chan struct{}, connections)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		slots <- struct{}{}
		wg.Add(1)
		go func(due time.Time) {
			defer wg.Done()
			err := post(c, url, body)
			<-slots
			rec.add(time.Since(due), err)
		}(due)
	}
	wg.Wait()
	return rec
}

func main() {
	url := flag.String("url", "", "where to POST")
	bodyFile := flag.String("body", "", "file holding the request body")
	caFile := flag.String("cacert", "", "CA that signed the server's certificate")
	certFile := flag.String("cert", "", "client certificate (optional)")
	keyFile := flag.String("key", "", "client key")
	connections := flag.Int("connections", 8, "connections at most")
	duration := flag.Duration("duration", 3*time.Second, "how long to measure")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "load before measuring, not counted")
	rate := flag.Float64("rate", 0, "requests per second (0: as fast as answered)")
	flag.Parse()

	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := client(*caFile, *certFile, *keyFile, *connections)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	run := func(d time.Duration) *recorder {
		if *rate > 0 {
			return paced(c, *url, body, *connections, d, *rate)
		}
		return saturate(c, *url, body, *connections, d)
	}
	if *warmup > 0 {
		run(*warmup)
	}
	started := time.Now()
	rec := run(*duration)
	elapsed := time.Since(started).Seconds()

	sort.Slice(rec.latencies, func(i, j int) bool { return rec.latencies[i] < rec.latencies[j] })
	out := result{
		Requests:   len(rec.latencies),
		Errors:     rec.errors,
		FirstError: rec.firstError,
		Seconds:    elapsed,
		PerSecond:  float64(len(rec.latencies)) / elapsed,
		P50Ms:      percentile(rec.latencies, 0.50),
		P99Ms:      percentile(rec.latencies, 0.99),
		MaxMs:      percentile(rec.latencies, 1.0),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
