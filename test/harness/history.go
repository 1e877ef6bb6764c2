package harness

import (
	"errors"
	"fmt"
	"io"
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
	// Silent: taken as stopped because its heartbeats went silent (a killed or starved process), not
	// because it recorded a stop.
	Silent bool
	// Process names the process that recorded a span read from witness records ("<who>-<pid>"); it tells
	// apart two processes of one Pod, such as a restarted container.
	Process string
}

// NewHistory returns an empty history whose clock starts now.
func NewHistory() *History { return &History{origin: time.Now()} }

func (h *History) now() time.Duration { return time.Since(h.origin) } // monotonic: time.Now carries it

// At is t on the history's clock, to compare with a Span's Start and End.
func (h *History) At(t time.Time) time.Duration { return t.Sub(h.origin) }

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

// Find returns the spans that match, in start order.
func (h *History) Find(match func(Span) bool) []Span {
	var out []Span
	for _, s := range h.Spans() {
		if match(s) {
			out = append(out, s)
		}
	}
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

// staleBeats is how many heartbeat periods a witness may stay silent before its leader is taken as no
// longer acting: its process was killed (a live one beats every period). A live process on a loaded machine
// can miss beats too: with other builds keeping 2 cores at a load average of 8 to 10, leaders' witnesses went
// silent for 110 ms while they kept their locks, so silence counts only past 300 ms (60 periods of 5 ms).
const staleBeats = 60

// ReadWitness reads the records that candidate processes wrote with witness.Recorder into dir, one file
// per process, and returns them as one History; see WitnessReader.
func ReadWitness(dir string) (*History, error) { return NewWitnessReader(dir).Read() }

// WitnessReader reads the witness records in a directory incrementally: each Read parses only what was
// appended since the last one, so a long run can poll its history cheaply.
type WitnessReader struct {
	dir   string
	files map[string]*witnessFile
}

// witnessFile is the parsing state of one process's record.
type witnessFile struct {
	offset int64
	rest   string // an incomplete last line, kept until its end is written
	line   int
	spans  []*Span
	cur    *Span
	period time.Duration
}

// NewWitnessReader returns a reader of the records in dir.
func NewWitnessReader(dir string) *WitnessReader {
	return &WitnessReader{dir: dir, files: map[string]*witnessFile{}}
}

// Read returns every span recorded so far as one History. A span without a stop line ends one period after
// its last heartbeat; it counts as stopped (not Acting) once its heartbeats have been silent for staleBeats periods.
func (r *WitnessReader) Read() (*History, error) {
	names, err := filepath.Glob(filepath.Join(r.dir, "*.log"))
	if err != nil {
		return nil, err
	}
	now := witness.Now()
	h := &History{}
	for _, name := range names {
		wf := r.files[name]
		if wf == nil {
			wf = &witnessFile{}
			r.files[name] = wf
		}
		if err := wf.readFrom(name); err != nil {
			return nil, fmt.Errorf("reading witness record %s: %w", name, err)
		}
		for _, sp := range wf.spans {
			c := *sp
			if !c.Stopped && sp == wf.cur {
				c.Stopped = now-c.End > staleBeats*wf.period
				c.Silent = c.Stopped
				c.End += wf.period
			}
			h.spans = append(h.spans, &c)
		}
	}
	return h, nil
}

func (wf *witnessFile) readFrom(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(wf.offset, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	wf.offset += int64(len(b))
	text := wf.rest + string(b)
	complete := strings.LastIndexByte(text, '\n') + 1
	wf.rest = text[complete:]
	process := strings.TrimSuffix(filepath.Base(name), ".log")
	for line := range strings.Lines(text[:complete]) {
		wf.line++
		if err := wf.parse(strings.TrimSpace(line), process); err != nil {
			return fmt.Errorf("line %d: %w", wf.line, err)
		}
	}
	return nil
}

func (wf *witnessFile) parse(line, process string) error {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return nil
	}
	ns, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || len(fields) < 2 {
		return fmt.Errorf("%q is not '<monotonic ns> <event>'", line)
	}
	at := time.Duration(ns)
	switch event := fields[1]; {
	case event == "start" && wf.cur != nil && !wf.cur.Stopped:
		return errors.New("a second start before a stop")
	case event == "start" && len(fields) == 4:
		p, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			return fmt.Errorf("period %q: %w", fields[3], err)
		}
		wf.period = time.Duration(p)
		wf.cur = &Span{Who: fields[2], Start: at, End: at, Process: process}
		wf.spans = append(wf.spans, wf.cur)
	case wf.cur == nil || wf.cur.Stopped:
		return fmt.Errorf("%q outside an acting interval", line)
	case event == "beat":
		wf.cur.End = at
	case event == "stop":
		wf.cur.End, wf.cur.Stopped = at, true
	default:
		return fmt.Errorf("unknown event %q", line)
	}
	return nil
}
