package harness

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// This file holds faults the suites inject into a candidate, and a candidate built the way a real main.go
// builds its manager.

// WatchBreaker breaks the watches of the connections it wraps while it is on, and leaves every other request
// (GET, LIST, PUT, ...) working: a leader whose watches are broken while the API server still answers.
//
// Break ends every watch stream open through the wrapped connections (the client sees the stream closed)
// and answers every new watch request with 429 Too Many Requests, what kube-apiserver's priority and
// fairness answers when it sheds watches. client-go's reflector retries a watch refused so with a back-off
// and does not list again, so an informer's cache stays as it was until Heal: nothing but a live read shows
// the candidate what changed meanwhile. (A 500 would make the reflector list again after its back-off, 0.8 s
// at first, then doubling: the cache would be refreshed at random times.)
type WatchBreaker struct {
	mu      sync.Mutex
	broken  bool
	streams map[*breakableBody]struct{}
	refused map[string]int // refused watch requests by URL path
}

// NewWatchBreaker returns a breaker that is off.
func NewWatchBreaker() *WatchBreaker {
	return &WatchBreaker{streams: map[*breakableBody]struct{}{}, refused: map[string]int{}}
}

// Wrap returns a copy of cfg whose watches the breaker controls.
func (w *WatchBreaker) Wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if !isWatch(r) {
				return rt.RoundTrip(r)
			}
			w.mu.Lock()
			if w.broken {
				w.refused[r.URL.Path]++
				w.mu.Unlock()
				return tooManyRequests(r), nil
			}
			w.mu.Unlock()
			resp, err := rt.RoundTrip(r)
			if err != nil || resp.StatusCode != http.StatusOK {
				return resp, err
			}
			b := &breakableBody{ReadCloser: resp.Body, owner: w}
			w.mu.Lock()
			if w.broken { // broken while the request was in flight
				b.broken = true
				_ = b.ReadCloser.Close()
			} else {
				w.streams[b] = struct{}{}
			}
			w.mu.Unlock()
			resp.Body = b
			return resp, nil
		})
	})
	return cfg
}

// Break turns the breaker on: open watch streams end, new watch requests are refused.
func (w *WatchBreaker) Break() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broken = true
	for b := range w.streams {
		b.breakLocked()
	}
	w.streams = map[*breakableBody]struct{}{}
}

// Heal turns the breaker off: watch requests reach the API server again.
func (w *WatchBreaker) Heal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broken = false
}

// Refused returns how many watch requests whose URL path contains substr (for example "/leases" or
// "/pods") were refused so far.
func (w *WatchBreaker) Refused(substr string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for path, c := range w.refused {
		if strings.Contains(path, substr) {
			n += c
		}
	}
	return n
}

func isWatch(r *http.Request) bool {
	return r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1" || strings.Contains(r.URL.Path, "/watch/")
}

// tooManyRequests is the answer kube-apiserver gives a request it sheds, without Retry-After (client-go's
// REST client would retry a request with one by itself).
func tooManyRequests(r *http.Request) *http.Response {
	status := apierrors.NewTooManyRequests("watches are broken by the test's WatchBreaker", 0).Status()
	status.Kind, status.APIVersion = "Status", "v1"
	body, _ := json.Marshal(status)
	return &http.Response{
		Status:        "429 Too Many Requests",
		StatusCode:    http.StatusTooManyRequests,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

// breakableBody is a watch stream's body that the breaker can end: once broken, reads return io.EOF, as
// for a stream the server closed.
type breakableBody struct {
	io.ReadCloser
	owner  *WatchBreaker
	broken bool // guarded by owner.mu
}

func (b *breakableBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.owner.mu.Lock()
	broken := b.broken
	b.owner.mu.Unlock()
	if broken {
		return 0, io.EOF
	}
	return n, err
}

func (b *breakableBody) Close() error {
	b.owner.mu.Lock()
	delete(b.owner.streams, b)
	b.owner.mu.Unlock()
	return b.ReadCloser.Close()
}

// breakLocked ends the stream: a read blocked on it returns. owner.mu must be held.
func (b *breakableBody) breakLocked() {
	b.broken = true
	_ = b.ReadCloser.Close()
}
