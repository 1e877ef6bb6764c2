package harness

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// History records, on one monotonic clock, when each leader starts acting, that it is still acting
// (heartbeats), and when it stops; Check asserts that no two acting intervals overlap.
type History struct {
	mu     sync.Mutex
	origin time.Time
	spans  []*Span
}

// Span is one leader's acting interval. End is the stop time, or the last heartbeat if it never stopped.
type Span struct {
	Who        string
	Start, End time.Duration
	Stopped    bool
}

// NewHistory returns an empty history whose clock starts now.
func NewHistory() *History { return &History{origin: time.Now()} }

func (h *History) now() time.Duration { return time.Since(h.origin) } // monotonic: time.Now carries it

// Begin records that who starts acting and returns the function to call while acting (a heartbeat) and
// the one to call when it stops.
func (h *History) Begin(who string) (beat, end func()) {
	h.mu.Lock()
	s := &Span{Who: who, Start: h.now()}
	s.End = s.Start
	h.spans = append(h.spans, s)
	h.mu.Unlock()
	beat = func() {
		h.mu.Lock()
		if !s.Stopped {
			s.End = h.now()
		}
		h.mu.Unlock()
	}
	end = func() {
		h.mu.Lock()
		if !s.Stopped {
			s.End, s.Stopped = h.now(), true
		}
		h.mu.Unlock()
	}
	return beat, end
}

// Spans returns a copy of the recorded spans, in start order.
func (h *History) Spans() []Span {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Span, len(h.spans))
	for i, s := range h.spans {
		out[i] = *s
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// Acting returns who is acting now (spans not stopped).
func (h *History) Acting() []string {
	var out []string
	for _, s := range h.Spans() {
		if !s.Stopped {
			out = append(out, s.Who)
		}
	}
	return out
}

// Check returns an error naming every pair of overlapping acting intervals.
func (h *History) Check() error {
	spans := h.Spans()
	var overlaps []string
	for i := range spans {
		for j := i + 1; j < len(spans); j++ {
			a, b := spans[i], spans[j]
			if b.Start < a.End { // sorted by start, so b starts within a
				overlaps = append(overlaps, fmt.Sprintf("%s [%s, %s] overlaps %s [%s, %s]", a.Who, a.Start, a.End, b.Who, b.Start, b.End))
			}
		}
	}
	if len(overlaps) > 0 {
		return fmt.Errorf("%d overlapping leaders: %s", len(overlaps), strings.Join(overlaps, "; "))
	}
	return nil
}

// Gap returns the time between the end of the span of from and the start of the first span of to that
// begins after it: a failover's length as the leaders themselves saw it.
func (h *History) Gap(from, to string) (time.Duration, error) {
	var end time.Duration
	found := false
	for _, s := range h.Spans() {
		if s.Who == from {
			end, found = s.End, true
		}
	}
	if !found {
		return 0, fmt.Errorf("%s never acted", from)
	}
	for _, s := range h.Spans() {
		if s.Who == to && s.Start >= end {
			return s.Start - end, nil
		}
	}
	return 0, fmt.Errorf("%s did not act after %s", to, from)
}
