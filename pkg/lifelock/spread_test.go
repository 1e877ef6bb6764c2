package lifelock

import (
	"math/rand/v2"
	"testing"
	"time"
)

// A follower whose acquisition is proven tries within the spread; one that is not waits half a spread
// more, so that a proven candidate most often takes a free lock first and nobody waits the grace for
// nothing.
func TestSpreadDelayLetsProvenCandidatesGoFirst(t *testing.T) {
	s := spreader{base: time.Second, spread: 100 * time.Millisecond}
	for range 1000 {
		if d := s.delay(true); d < 0 || d >= s.spread {
			t.Fatalf("proven: %s, want in [0, %s)", d, s.spread)
		}
		if d := s.delay(false); d < s.spread/2 || d >= s.spread*3/2 {
			t.Fatalf("unproven: %s, want in [%s, %s)", d, s.spread/2, s.spread*3/2)
		}
	}
	if d := newSpreader(0).delay(false); d != 0 {
		t.Fatalf("no spread: %s, want 0", d)
	}
}

func TestSpreadAdapts(t *testing.T) {
	const base = 100 * time.Millisecond
	ms := time.Millisecond
	for _, c := range []struct {
		name        string
		spread, rtt time.Duration
		adapt       func(*spreader)
		wantSpread  time.Duration
		wantRTT     time.Duration
	}{
		{"a lost race doubles it", base, 5 * ms, func(s *spreader) { s.lost(5 * ms) }, 2 * base, 5 * ms},
		{"a lost race raises it to 4 round trips of the lost write", 10 * ms, 5 * ms, func(s *spreader) { s.lost(150 * ms) }, 600 * ms, 150 * ms},
		{"up to 16 × AcquireSpread", 12 * base, 5 * ms, func(s *spreader) { s.lost(5 * ms) }, 16 * base, 5 * ms},
		{"a stored write is measured, and changes nothing else", base, 5 * ms, func(s *spreader) { s.wrote(20 * ms) }, base, 20 * ms},
		{"standing down after a late winner shrinks it by a quarter", base, 5 * ms, func(s *spreader) { s.stoodDown(10 * ms) }, 75 * ms, 5 * ms},
		{"down to AcquireSpread/10", 12 * ms, 5 * ms, func(s *spreader) { s.stoodDown(time.Second) }, 10 * ms, 5 * ms},
		{"standing down after a winner within 2 round trips keeps it", base, 5 * ms, func(s *spreader) { s.stoodDown(9 * ms) }, base, 5 * ms},
	} {
		s := spreader{base: base, spread: c.spread, rtt: c.rtt}
		c.adapt(&s)
		if s.spread != c.wantSpread || s.rtt != c.wantRTT {
			t.Errorf("%s: spread %s, round trip %s; want %s, %s", c.name, s.spread, s.rtt, c.wantSpread, c.wantRTT)
		}
	}
	if s := newSpreader(base); s.spread != 10*ms || s.rtt != 10*ms {
		t.Errorf("a new follower's spread is %s and round trip %s, want both AcquireSpread/10", s.spread, s.rtt)
	}
	s := newSpreader(0)
	s.lost(time.Second)
	s.stoodDown(time.Hour)
	if s.spread != 0 || s.delay(true) != 0 {
		t.Errorf("a zero AcquireSpread adapted to %s; it must stay zero", s.spread)
	}
}

// TestSpreadHoldsTheHerdNearOne plays failovers of N followers against a model of the API server whose
// writes take longer the more it refuses at once, and checks that the number of followers that fire in
// vain settles near one or two at N = 100 as well as N = 3, within a few failovers of a cold start.
func TestSpreadHoldsTheHerdNearOne(t *testing.T) {
	for _, n := range []int{3, 10, 100} {
		lost := herdModel(n, 40)
		tail := 0
		for _, k := range lost[5:] {
			tail += k
		}
		t.Logf("N = %d: followers that lost the race, per failover: %v", n, lost)
		if mean := float64(tail) / float64(len(lost)-5); mean > 3 {
			t.Errorf("N = %d: %.1f followers lost the race per failover after the fifth (%v); want at most 3", n, mean, lost)
		}
	}
}

// herdModel plays the given number of failovers of n candidates (n−1 followers, all proven) with
// AcquireSpread at its default, and returns how many followers lost the race in each. The model API server
// shows a write 10 ms after it is sent, plus 1.5 ms for each write sent alongside it (half of them queued
// ahead), and answers a refused write as late as the last of them.
func herdModel(n, failovers int) []int {
	const (
		latency = 10 * time.Millisecond
		perW    = 1500 * time.Microsecond
	)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	fs := make([]spreader, n-1)
	for i := range fs {
		fs[i] = newSpreader(DefaultAcquireSpread)
	}
	var lost []int
	for range failovers {
		d := make([]time.Duration, len(fs))
		first := 0
		for i := range fs {
			d[i] = time.Duration(rng.Int64N(int64(fs[i].spread)))
			if d[i] < d[first] {
				first = i
			}
		}
		firing := func(shows time.Duration) (k int) {
			for i := range d {
				if d[i] < d[first]+shows {
					k++
				}
			}
			return k
		}
		shows := latency + perW*time.Duration(firing(latency)-1)/2
		fired := firing(shows)
		rtt := latency + perW*time.Duration(fired)
		for i := range fs {
			switch {
			case i == first:
				fs[i].wrote(rtt)
			case d[i] < d[first]+shows:
				fs[i].lost(rtt)
			default:
				fs[i].stoodDown(d[first] + shows)
			}
		}
		lost = append(lost, fired-1)
	}
	return lost
}
