package main

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of ds, or 0 for none.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(rank, len(s)-1))]
}

func latencies(samples []sample) []time.Duration {
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = s.Latency
	}
	return ds
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// perMinute scales a count over r's window to one minute.
func (r *result) perMinute(n float64) float64 { return n * float64(time.Minute) / float64(r.Window) }

func (r *result) writesPerMin() float64 {
	return r.perMinute(r.Requests.sum(request.isWrite))
}

func (r *result) readsPerMin() float64 {
	return r.perMinute(r.Requests.sum(func(q request) bool { return !q.isWrite() }))
}

// nonWatchPerCandidate is the steady-state rate of requests other than watches, per candidate.
func (r *result) nonWatchPerCandidate() float64 {
	return (r.writesPerMin() + r.readsPerMin()) / float64(r.N)
}

func (r *result) rssMiB() float64 {
	var xs []float64
	for _, p := range r.Procs {
		xs = append(xs, float64(p.RSSKiB)/1024)
	}
	return median(xs)
}

// cpuMsPerMin is the median candidate's CPU time per minute of the window, in milliseconds.
func (r *result) cpuMsPerMin() float64 {
	var xs []float64
	for _, p := range r.Procs {
		xs = append(xs, r.perMinute(p.CPUSeconds*1000))
	}
	return median(xs)
}

// run is everything one invocation measured.
type run struct {
	Machine  string
	Started  time.Time
	Took     time.Duration
	Cfg      config
	Baseline *result // the control plane alone, no candidates
	Results  []*result
	Cost     *costRun // the cluster-scale cost scenario, if it ran
	How      string   // how the run was started, for the report: "`make bench`", "`make bench QUICK=1`", ...
}

func (rn *run) find(i impl, n int) *result {
	for _, r := range rn.Results {
		if r.Impl == i && r.N == n {
			return r
		}
	}
	return nil
}

// ratio formats other / base, as "lease / life" reads.
func ratio(other, base float64) string {
	switch {
	case base == 0 && other == 0:
		return "="
	case base == 0:
		return "∞"
	default:
		return fmt.Sprintf("%.3g×", other/base)
	}
}

func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case math.Abs(x) >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	default:
		return strconv.FormatFloat(x, 'g', 3, 64)
	}
}

func ms(d time.Duration) string { return num(float64(d) / float64(time.Millisecond)) }

// markdown renders the run: the election tables the README quotes, then the cost scenario's section.
func (rn *run) markdown() string {
	var parts []string
	if len(rn.Cfg.ns) > 0 {
		parts = append(parts, rn.electionMarkdown())
	}
	if rn.Cost != nil {
		how := rn.How
		if how == "" {
			how = "`make bench`"
		}
		parts = append(parts, rn.Cost.markdown(rn.Machine, rn.Started, how))
	}
	return strings.Join(parts, "\n")
}

// electionMarkdown renders the steady-state and failover measurements as the tables the README quotes.
func (rn *run) electionMarkdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	how := rn.How
	if how == "" {
		how = "`make bench`"
	}
	p("Measured %s on %s by %s: %d failovers per scenario, steady-state window %s. The run took %s.\n\n",
		rn.Started.UTC().Format("2006-01-02 15:04 UTC"), rn.Machine, how, rn.Cfg.reps, rn.Cfg.window, rn.Took.Round(time.Second))
	p("| N | per lock | %s | %s | %s | lease / life | oplib / life |\n|---:|---|---:|---:|---:|---:|---:|\n", life, lease, oplib)
	for _, n := range rn.Cfg.ns {
		rows := []struct {
			name string
			val  func(*result) float64
			fmt  func(float64) string
		}{
			{"election writes / min", (*result).writesPerMin, num},
			{"election reads / min (no watches)", (*result).readsPerMin, num},
			{"non-watch requests / min per candidate", (*result).nonWatchPerCandidate, num},
			{"open watches per candidate", func(r *result) float64 { return r.Watches.sum(func(request) bool { return true }) / float64(r.N) }, num},
			{"crash failover p50 (ms)", func(r *result) float64 { return msOf(percentile(latencies(r.Failovers[crash]), 0.5)) }, num},
			{"crash failover p99 (ms)", func(r *result) float64 { return msOf(percentile(latencies(r.Failovers[crash]), 0.99)) }, num},
			{"hand-off p50 (ms)", func(r *result) float64 { return msOf(percentile(latencies(r.Failovers[handoff]), 0.5)) }, num},
			{"hand-off p99 (ms)", func(r *result) float64 { return msOf(percentile(latencies(r.Failovers[handoff]), 0.99)) }, num},
			{"RSS per candidate (MiB, median)", (*result).rssMiB, num},
			{"CPU per candidate (ms / min, median)", (*result).cpuMsPerMin, num},
		}
		for _, row := range rows {
			vals := map[impl]float64{}
			cells := []string{}
			for _, i := range []impl{life, lease, oplib} {
				if r := rn.find(i, n); r != nil {
					vals[i] = row.val(r)
					cells = append(cells, row.fmt(vals[i]))
				} else {
					cells = append(cells, "–")
				}
			}
			rl, ro := "–", "–"
			if rn.find(life, n) != nil && rn.find(lease, n) != nil {
				rl = ratio(vals[lease], vals[life])
			}
			if rn.find(life, n) != nil && rn.find(oplib, n) != nil {
				ro = ratio(vals[oplib], vals[life])
			}
			p("| %d | %s | %s | %s | %s |\n", n, row.name, strings.Join(cells, " | "), rl, ro)
		}
	}
	p("\nFailover latency in ms, from the Pod's delete request to the next leader's first action:\n\n")
	p("| N | scenario | implementation | locks | p50 | p95 | p99 | max | overlaps |\n|---:|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range rn.Cfg.ns {
		for _, sc := range allScenarios {
			for _, i := range rn.Cfg.impls {
				r := rn.find(i, n)
				if r == nil {
					continue
				}
				ls := latencies(r.Failovers[sc])
				p("| %d | %s | %s | %d | %s | %s | %s | %s | %d |\n", n, sc, i, r.Groups,
					ms(percentile(ls, 0.5)), ms(percentile(ls, 0.95)), ms(percentile(ls, 0.99)), ms(percentile(ls, 1)), r.Overlaps)
			}
		}
	}
	p("\nSteady-state requests per minute, by verb and resource (all candidates of one lock):\n\n")
	p("| N | implementation | requests / min | watches open |\n|---:|---|---|---|\n")
	for _, n := range rn.Cfg.ns {
		for _, i := range rn.Cfg.impls {
			if r := rn.find(i, n); r != nil {
				p("| %d | %s | %s | %s |\n", n, i, r.breakdown(), listCounts(r.Watches, func(v float64) float64 { return v }))
			}
		}
	}
	if bl := rn.Baseline; bl != nil {
		p("\nThe control plane alone (no candidates) made %s over the same window, besides kube-apiserver's own identity-Lease renewals (%s / min), which every row leaves out.\n",
			bl.breakdown(), num(bl.perMinute(bl.OwnLeaseWrites)))
	}
	return b.String()
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// breakdown lists the requests per minute by kind, most frequent first.
func (r *result) breakdown() string { return listCounts(r.Requests, r.perMinute) }

// listCounts lists counts by kind, scaled, largest first.
func listCounts(counts requestCounts, scale func(float64) float64) string {
	type kv struct {
		k request
		v float64
	}
	var kvs []kv
	for k, v := range counts {
		kvs = append(kvs, kv{k, v})
	}
	if len(kvs) == 0 {
		return "none"
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if a.v != b.v {
			return int(math.Copysign(1, b.v-a.v))
		}
		return strings.Compare(a.k.String(), b.k.String())
	})
	var parts []string
	for _, e := range kvs {
		parts = append(parts, fmt.Sprintf("%s %s", e.k, num(scale(e.v))))
	}
	return strings.Join(parts, ", ")
}

// writeFiles writes results.md, the three CSV files and failover.png into dir, and the cost scenario's
// cost.csv and cost-requests.csv if it ran.
func (rn *run) writeFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if rn.Cost != nil {
		if err := rn.Cost.writeCostFiles(dir); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(rn.markdown()), 0o644); err != nil {
		return err
	}
	if len(rn.Cfg.ns) == 0 { // only the cost scenario ran
		return nil
	}
	failovers := [][]string{{"implementation", "n", "scenario", "lock", "latency_ms", "from_pod", "to_pod"}}
	requests := [][]string{{"implementation", "n", "verb", "resource", "count", "window_s", "per_min"}}
	processes := [][]string{{"implementation", "n", "pod", "leader", "rss_kib", "cpu_s", "window_s"}}
	all := rn.Results
	if rn.Baseline != nil {
		all = append([]*result{rn.Baseline}, all...)
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for _, r := range all {
		w := f(r.Window.Seconds())
		for _, sc := range allScenarios {
			for _, s := range r.Failovers[sc] {
				failovers = append(failovers, []string{string(r.Impl), strconv.Itoa(r.N), string(sc), strconv.Itoa(s.Group), f(msOf(s.Latency)), s.From, s.To})
			}
		}
		for _, k := range slices.SortedFunc(func(yield func(request) bool) {
			for k := range r.Requests {
				if !yield(k) {
					return
				}
			}
		}, func(a, b request) int { return strings.Compare(a.String(), b.String()) }) {
			requests = append(requests, []string{string(r.Impl), strconv.Itoa(r.N), k.Verb, k.Resource, f(r.Requests[k]), w, f(r.perMinute(r.Requests[k]))})
		}
		for _, p := range r.Procs {
			processes = append(processes, []string{string(r.Impl), strconv.Itoa(r.N), p.Pod, strconv.FormatBool(p.Leader), strconv.FormatInt(p.RSSKiB, 10), f(p.CPUSeconds), w})
		}
	}
	for name, rows := range map[string][][]string{"failovers.csv": failovers, "requests.csv": requests, "processes.csv": processes} {
		if err := writeCSV(filepath.Join(dir, name), rows); err != nil {
			return err
		}
	}
	return writeChart(filepath.Join(dir, "failover.png"), rn)
}

func writeCSV(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
