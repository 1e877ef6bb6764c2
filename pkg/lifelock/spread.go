package lifelock

import (
	"math/rand/v2"
	"time"
)

// This file holds the adaptive spread (Options.AcquireSpread): pure arithmetic on what one follower
// measured, used by Lock.Get, Create and Update and by the simulation. Safety never rests on it; it decides
// only how many followers send a write when a lock becomes free, and how soon the first one does.

// Bounds of the adaptive spread, as multiples of Options.AcquireSpread, and the rules that move it.
const (
	maxSpreadFactor  = 16
	minSpreadDivisor = 10
	// lossRoundTrips: after a lost race, the spread is at least this many round trips of the lost write.
	lossRoundTrips = 4
	// lateRoundTrips: standing down shrinks the spread only if the winner's write showed at least this many
	// round trips after the lock became free.
	lateRoundTrips = 2
)

// spreader is one follower's adaptive spread, and the round trip it last measured for its own write.
//
// The aim is that the number of followers that fire before the first write shows, not their share, stays
// near one or two whatever the number of candidates N (which no follower sees). With N followers spread
// uniformly over S, the first fires about S/N after the lock becomes free and the others see its write a
// round trip R later; about (N−1)·R/S fire in that window and lose. So S should be about N·R:
//   - A lost race (its write came second) doubles the spread, and raises it to at least 4 round trips of the
//     lost write. That round trip grows with the number of writes the API server is refusing at once, so a
//     herd of 100 spreads out in one failover rather than seven doublings.
//   - Standing down (another's write showed while this follower waited, having sent nothing) shrinks the
//     spread by a quarter, but only if that write came late: at least 2 round trips after the lock became
//     free, so that the first follower fired at least a round trip after it could have. If the winner came
//     earlier, the spread is about right and stays.
//
// The least spread is AcquireSpread/10, where it starts: with few candidates the first attempt comes within
// a few milliseconds. The most is 16 × AcquireSpread.
type spreader struct {
	base   time.Duration // Options.AcquireSpread; zero: no spread
	spread time.Duration // the spread now
	rtt    time.Duration // the round trip of this candidate's last acquisition write; AcquireSpread/10 before its first
}

func newSpreader(base time.Duration) spreader {
	return spreader{base: base, spread: base / minSpreadDivisor, rtt: base / minSpreadDivisor}
}

// lost adapts the spread to a race this follower lost: another candidate's write came first, and this one's,
// refused, took rtt.
func (s *spreader) lost(rtt time.Duration) {
	if s.base <= 0 {
		return
	}
	s.rtt = rtt
	s.spread = min(max(2*s.spread, lossRoundTrips*rtt), maxSpreadFactor*s.base)
}

// wrote notes the round trip of an acquisition write of this candidate that was stored.
func (s *spreader) wrote(rtt time.Duration) {
	if s.base > 0 {
		s.rtt = rtt
	}
}

// stoodDown adapts the spread to a race this follower sat out: another candidate took the lock, waited
// after this follower found it free, before this follower's turn came.
func (s *spreader) stoodDown(waited time.Duration) {
	if s.base <= 0 || waited < lateRoundTrips*s.rtt {
		return
	}
	s.spread = max(s.spread*3/4, s.base/minSpreadDivisor)
}

// delay is how long a follower that found the lock free waits before it tries: a random time up to the
// spread if its acquisition is proven (every earlier holder is proven stopped, so the new leader starts at
// once), and half a spread more if not, so that a proven candidate, if there is one, most often takes the
// lock first rather than one that would make everybody wait the acquisition grace.
func (s spreader) delay(proven bool) time.Duration {
	if s.spread <= 0 {
		return 0
	}
	d := rand.N(s.spread)
	if !proven {
		d += s.spread / 2
	}
	return d
}
