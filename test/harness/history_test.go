package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifelock/lifelock/test/harness/witness"
)

func TestReadWitness(t *testing.T) {
	const period = 5 * time.Millisecond
	now := witness.Now()
	line := func(at time.Duration, rest string) string {
		return strings.Join([]string{itoa(now - time.Second + at), rest}, " ") + "\n"
	}
	dir := t.TempDir()
	write := func(name string, lines ...string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.Join(lines, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// a acted from 0 to 100 ms and stopped; b started at 90 ms and was killed after its beat at 200 ms;
	// c acts now.
	write("a-1.log", line(0, "start a 5000000"), line(50*time.Millisecond, "beat"), line(100*time.Millisecond, "stop"))
	write("b-2.log", line(90*time.Millisecond, "start b 5000000"), line(200*time.Millisecond, "beat"))
	write("c-3.log", line(time.Second, "start c 5000000"))
	h, err := ReadWitness(dir)
	if err != nil {
		t.Fatal(err)
	}
	spans := h.Spans()
	if len(spans) != 3 || spans[1].Who != "b" || !spans[1].Stopped || spans[1].End != now-time.Second+200*time.Millisecond+period {
		t.Fatalf("spans = %+v; want b stopped one period after its last beat", spans)
	}
	if got := h.Acting(); len(got) != 1 || got[0] != "c" {
		t.Errorf("Acting = %v, want [c]", got)
	}
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "a [") || !strings.Contains(err.Error(), "overlaps b") {
		t.Errorf("Check = %v, want a overlapping b", err)
	}

	// Read again after more was appended, a line of it still being written: only complete lines count.
	r := NewWitnessReader(dir)
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "c-3.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	stop := line(time.Second+10*time.Millisecond, "stop")
	if _, err := f.WriteString(stop[:5]); err != nil {
		t.Fatal(err)
	}
	if h, err := r.Read(); err != nil || len(h.Acting()) != 1 {
		t.Fatalf("with a partial line: acting %v, err %v; want c still acting", h.Acting(), err)
	}
	if _, err := f.WriteString(stop[5:]); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if h, err := r.Read(); err != nil || len(h.Acting()) != 0 {
		t.Fatalf("after c's stop: acting %v, err %v; want nobody", h.Acting(), err)
	}

	write("d-4.log", line(0, "beat"))
	if _, err := ReadWitness(dir); err == nil {
		t.Error("a beat outside an acting interval was accepted")
	}
}

func itoa(d time.Duration) string { return strconv.FormatInt(int64(d), 10) }
