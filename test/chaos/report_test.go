package chaos

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// table renders the run as Markdown: per kind of disruption, how often it came, how often the leader
// changed, the latency from the disruption to the next leader acting, and overlaps (always 0, or the run
// would have failed at that round).
func (r *runner) table(seed int64, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Seed %d, %d rounds, %d candidates, %s, %d CPUs, %s; %d lock versions checked.\n\n",
		seed, len(r.results), *candidates, took.Round(time.Second), runtime.NumCPU(), time.Now().UTC().Format("2006-01-02"), r.lockStates.count())
	b.WriteString("| disruption | count | leader changed | p50 | p95 | p99 | max | overlaps |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	var fences []time.Duration
	var proven, paid, unseen int // handovers from a holder proven stopped; those that paid the grace; of those, by a candidate that never saw the holder
	for _, k := range allKinds {
		var lat []time.Duration
		n, changed := 0, 0
		for _, res := range r.results {
			if res.kind != k {
				continue
			}
			n++
			if res.changed {
				changed++
			}
			if res.latency > 0 {
				lat = append(lat, res.latency)
			}
			if res.changed && (k == kill || k == term || k == statefulSet) {
				proven++
				if res.gracePaid {
					paid++
				}
				if res.gracePaid && res.unseen {
					unseen++
				}
			}
			if res.kind == evict {
				fences = append(fences, res.fence)
			}
		}
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | 0 |\n", k, n, changed,
			percentile(lat, 0.50), percentile(lat, 0.95), percentile(lat, 0.99), percentile(lat, 1))
	}
	b.WriteString("\nLatency: from the start of the disruption to the next leader's first action, on the witness clock " +
		"(none for disruptions that must not move the lock; there the same leader acted throughout).\n")
	if proven > 0 {
		fmt.Fprintf(&b, "Handovers from a holder proven stopped (SIGKILL or SIGTERM, then the Pod deleted; StatefulSet restart): %d; "+
			"the new leader paid the acquisition grace in %d, %d of them a candidate that had never seen the lock held "+
			"(from its \"Acquired lock\" log line).\n", proven, paid, unseen)
	}
	if len(fences) > 0 {
		fmt.Fprintf(&b, "Evicted leaders stopped acting %s (p50) / %s (max) after the eviction; the bound is %s.\n",
			percentile(fences, 0.5), percentile(fences, 1), fenceBound)
	}
	return b.String()
}

// percentile returns the q-quantile of ds (nearest rank), or "–" for none.
func percentile(ds []time.Duration, q float64) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := max(int(math.Ceil(q*float64(len(s))))-1, 0)
	return s[i].Round(time.Millisecond).String()
}
