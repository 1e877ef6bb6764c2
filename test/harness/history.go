package harness

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifelock/lifelock/test/harness/witness"
)

// History records, on one monotonic clock, when each leader starts acting, that it is still acting
// (heartbeats), and when it stops; Check asserts that no two acting intervals overlap.
type History struct {
	mu     sync.Mutex
	origin time.Time
	spans  []*Span
}

// Span is one leader's acting interval. End is the stop time, or the last heartbeat if it never stopped.
// In a history read from witness records, Start and End are readings of CLOCK_MONOTONIC (witness.Now), and
// a leader that never recorded a stop ends one heartbeat period after its last heartbeat.
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

// staleBeats is how many heartbeat periods a witness may stay silent before ReadWitness takes its leader
// as no longer acting: its process was killed (a live one beats every period).
const staleBeats = 20

// ReadWitness reads the records that candidate processes wrote with witness.Recorder into dir, one file
// per process, and returns them as one History. A span without a stop line ends one period after its last
// heartbeat; it counts as stopped (not Acting) once its heartbeats have been silent for 20 periods.
func ReadWitness(dir string) (*History, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, err
	}
	now := witness.Now()
	h := &History{}
	for _, file := range files {
		spans, err := readWitnessFile(file, now)
		if err != nil {
			return nil, fmt.Errorf("reading witness record %s: %w", file, err)
		}
		h.spans = append(h.spans, spans...)
	}
	return h, nil
}

func readWitnessFile(file string, now time.Duration) ([]*Span, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var (
		spans  []*Span
		cur    *Span
		period time.Duration
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil || len(fields) < 2 {
			return nil, fmt.Errorf("line %d: %q is not '<monotonic ns> <event>'", n, sc.Text())
		}
		at := time.Duration(ns)
		switch event := fields[1]; {
		case event == "start" && cur != nil && !cur.Stopped:
			return nil, fmt.Errorf("line %d: a second start before a stop", n)
		case event == "start" && len(fields) == 4:
			p, err := strconv.ParseInt(fields[3], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: period %q: %w", n, fields[3], err)
			}
			period = time.Duration(p)
			cur = &Span{Who: fields[2], Start: at, End: at}
			spans = append(spans, cur)
		case cur == nil || cur.Stopped:
			return nil, fmt.Errorf("line %d: %q outside an acting interval", n, sc.Text())
		case event == "beat":
			cur.End = at
		case event == "stop":
			cur.End, cur.Stopped = at, true
		default:
			return nil, fmt.Errorf("line %d: unknown event %q", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil && !cur.Stopped {
		cur.Stopped = now-cur.End > staleBeats*period
		cur.End += period
	}
	return spans, nil
}
