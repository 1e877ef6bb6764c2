package main

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifelock/lifelock/test/harness"
)

// perMin scales a count over w's window to one minute.
func (w *costWindow) perMin(n float64) float64 { return n * float64(time.Minute) / float64(w.Window) }

// nonWatchPerMin is the rate of every request but watches.
func (w *costWindow) nonWatchPerMin() float64 {
	return w.perMin(w.Requests.sum(func(r request) bool { return r.Verb != "WATCH" }))
}

func (w *costWindow) writesPerMin() float64 { return w.perMin(w.Requests.sum(request.isWrite)) }

// allPerMin is the rate of every request, watches included (a watch counts once it ends).
func (w *costWindow) allPerMin() float64 {
	return w.perMin(w.Requests.sum(func(request) bool { return true }))
}

func (w *costWindow) apiCPUMsPerMin() float64  { return w.perMin(w.APIServer.CPUSeconds * 1000) }
func (w *costWindow) etcdCPUMsPerMin() float64 { return w.perMin(w.Etcd.CPUSeconds * 1000) }

const mib = 1024 * 1024

// summary is the one line the bench logs for a window.
func (w *costWindow) summary() string {
	return fmt.Sprintf("%s non-watch requests/min (%s writes), %s watches open, kube-apiserver %s ms CPU/min, RSS %s MiB, live heap %s MiB; etcd %s ms CPU/min; machine %.0f%% busy, load %s",
		num(w.nonWatchPerMin()), num(w.writesPerMin()), num(w.WatchesEnd), num(w.apiCPUMsPerMin()), num(float64(w.APIServer.RSSKiB)/1024),
		num(w.HeapLiveBytes/mib), num(w.etcdCPUMsPerMin()), 100*w.MachineBusy, w.LoadAvg)
}

// costRow is one measured quantity of the cost table.
type costRow struct {
	name string
	val  func(*costWindow) float64
}

var costRows = []costRow{
	{"API requests / min, non-watch", (*costWindow).nonWatchPerMin},
	{"… of them writes / min", (*costWindow).writesPerMin},
	{"API requests / min, all verbs (a watch counts when it ends)", (*costWindow).allPerMin},
	{"watches open (end of window)", func(w *costWindow) float64 { return w.WatchesEnd }},
	{"kube-apiserver CPU (ms / min)", (*costWindow).apiCPUMsPerMin},
	{"kube-apiserver RSS (MiB, end of window)", func(w *costWindow) float64 { return float64(w.APIServer.RSSKiB) / 1024 }},
	{"kube-apiserver live heap (MiB, go_gc_heap_live_bytes)", func(w *costWindow) float64 { return w.HeapLiveBytes / mib }},
	{"kube-apiserver goroutines", func(w *costWindow) float64 { return w.Goroutines }},
	{"etcd CPU (ms / min)", (*costWindow).etcdCPUMsPerMin},
	{"etcd RSS (MiB, end of window)", func(w *costWindow) float64 { return float64(w.Etcd.RSSKiB) / 1024 }},
}

// deltaRatio formats what other adds over the baseline divided by what base adds: "∞" if only other adds
// anything, "0×" if only base does, "=" if neither does.
func deltaRatio(other, base float64) string {
	switch {
	case base <= 0 && other <= 0:
		return "="
	case base <= 0:
		return "∞"
	case other <= 0:
		return "0×"
	default:
		return ratio(other, base)
	}
}

// signed formats a delta with its sign.
func signed(x float64) string {
	if x > 0 {
		return "+" + num(x)
	}
	return num(x)
}

func (cr *costRun) find(i impl) *costWindow {
	for _, w := range cr.Windows {
		if w.Impl == i {
			return w
		}
	}
	return nil
}

// markdown renders the cost scenario's section of results.md.
func (cr *costRun) markdown(machine string, started time.Time, how string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := cr.Cfg
	p("## Cluster-scale cost: %d locks × %d candidates, idle\n\n", c.locks, c.perLock)
	p("What the elections cost the API server. Measured %s on %s by %s: for each implementation, %d locks with %d candidates each (%d candidate processes), idle for one window of %s once every lock had its leader and the followers had settled; before them, one window of the same length with no candidates (the baseline). One window each, no medians.\n\n",
		started.UTC().Format("2006-01-02 15:04 UTC"), machine, how, c.locks, c.perLock, c.locks*c.perLock, c.window)
	p("Every candidate is its own process (`test/bench/candidate`) playing the container of its own Pod, as in the rest of the bench, whatever the implementation: its own client, its own connection, its own watches, and the requests it would make in a cluster. (operator-lib's `leader.Become` needs a process per candidate anyway: it reads its Pod's name from the environment and its namespace from a file; one process each keeps the three alike.) The candidates' own CPU and memory are not counted here; the table is kube-apiserver's and etcd's. A leader's only work is a witness record of its leadership, a local file it appends to every %s here (instead of the 5 ms the failover timings need, which a hundred leaders would pay with the machine's cores). Between implementations every process is stopped and its Pods and locks are deleted, and the next implementation's candidates start only once they are gone.\n\n", costBeat)
	p("Requests are `apiserver_request_total` over the window, requests for API objects only, less kube-apiserver's renewals of its own identity Lease (%s / min in the baseline, counted by a watch), so the baseline shows what else the control plane (its garbage collector and Pod GC) asks of itself. A watch counts there only once it ends: the few that end in a window are kube-controller-manager's, which renews its watches every 5 to 10 minutes; the candidates' watches stay open. Watches open are `apiserver_longrunning_requests{verb=\"WATCH\"}` (v%s exposes no `apiserver_registered_watchers`). CPU is kube-apiserver's utime + stime from `/proc/<pid>/stat` over the window; RSS is `VmRSS` at its end; live heap is what the Go runtime's last GC found live. The ratios divide what each implementation adds over the baseline.\n\n",
		num(cr.Baseline.perMin(cr.Baseline.OwnLeaseWrites)), harness.K8sVersion)
	order := []impl{life, lease, oplib}
	p("| idle, per minute | baseline | %s | %s | %s | %s − base | %s − base | %s − base | lease / life | oplib / life |\n", life, lease, oplib, life, lease, oplib)
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range costRows {
		base := row.val(cr.Baseline)
		cells := []string{num(base)}
		var deltas []string
		d := map[impl]float64{}
		for _, i := range order {
			w := cr.find(i)
			if w == nil {
				cells, deltas = append(cells, "–"), append(deltas, "–")
				continue
			}
			v := row.val(w)
			d[i] = v - base
			if math.Abs(d[i]) < 1e-9*math.Max(math.Abs(v), math.Abs(base)) { // float rounding, not a difference
				d[i] = 0
			}
			cells, deltas = append(cells, num(v)), append(deltas, signed(d[i]))
		}
		rl, ro := "–", "–"
		if cr.find(life) != nil && cr.find(lease) != nil {
			rl = deltaRatio(d[lease], d[life])
		}
		if cr.find(life) != nil && cr.find(oplib) != nil {
			ro = deltaRatio(d[oplib], d[life])
		}
		p("| %s | %s | %s | %s | %s |\n", row.name, strings.Join(cells, " | "), strings.Join(deltas, " | "), rl, ro)
	}
	p("\nRequests per minute by verb and resource, the watches open at the end beyond the baseline's, and the machine during each window (2 cores shared by the control plane, the candidates and anything else running; busy is the share of all cores' time):\n\n")
	p("| window | locks × candidates | requests / min | watches open − base | machine busy | load average (end) |\n|---|---|---|---|---:|---|\n")
	for _, w := range append([]*costWindow{cr.Baseline}, cr.Windows...) {
		extra := "–"
		if w != cr.Baseline {
			extra = listCounts(w.Watches.minus(cr.Baseline.Watches), func(v float64) float64 { return v })
		}
		p("| %s | %d × %d | %s | %s | %.0f%% | %s |\n", w.Impl, w.Locks, w.PerLock, listCounts(w.Requests, w.perMin), extra, 100*w.MachineBusy, w.LoadAvg)
	}
	p("\nThe windows ran one after another on one kube-apiserver (baseline, %s): the Go runtime returns freed memory to the system lazily, so RSS can keep what an earlier window grew; the live heap is the better figure for what an implementation keeps. Each figure comes from one window of %s; CPU over it includes the control plane's own periodic work, which the baseline shows, and small differences in CPU are within what one window varies, the more so on a busy machine.\n",
		strings.Join(implNames(cr.Windows), ", "), c.window)
	return b.String()
}

func implNames(ws []*costWindow) []string {
	var names []string
	for _, w := range ws {
		names = append(names, string(w.Impl))
	}
	return names
}

// costCSVs returns the rows of cost.csv (one per window) and cost-requests.csv (one per window, verb and
// resource).
func (cr *costRun) costCSVs() (cost, requests [][]string) {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	cost = [][]string{{"implementation", "locks", "candidates_per_lock", "window_s", "leaders",
		"nonwatch_requests", "write_requests", "all_requests", "own_lease_writes", "nonwatch_per_min", "all_per_min",
		"watches_open_start", "watches_open_end",
		"apiserver_cpu_s", "apiserver_cpu_ms_per_min", "apiserver_rss_kib", "apiserver_heap_live_bytes", "apiserver_goroutines",
		"etcd_cpu_s", "etcd_cpu_ms_per_min", "etcd_rss_kib", "machine_busy", "loadavg"}}
	requests = [][]string{{"implementation", "verb", "resource", "count", "window_s", "per_min"}}
	for _, w := range append([]*costWindow{cr.Baseline}, cr.Windows...) {
		all := func(request) bool { return true }
		cost = append(cost, []string{string(w.Impl), strconv.Itoa(w.Locks), strconv.Itoa(w.PerLock), f(w.Window.Seconds()), strconv.Itoa(w.Leaders),
			f(w.Requests.sum(func(r request) bool { return r.Verb != "WATCH" })), f(w.Requests.sum(request.isWrite)), f(w.Requests.sum(all)),
			f(w.OwnLeaseWrites), f(w.nonWatchPerMin()), f(w.allPerMin()),
			f(w.WatchesStart), f(w.WatchesEnd),
			f(w.APIServer.CPUSeconds), f(w.apiCPUMsPerMin()), strconv.FormatInt(w.APIServer.RSSKiB, 10), f(w.HeapLiveBytes), f(w.Goroutines),
			f(w.Etcd.CPUSeconds), f(w.etcdCPUMsPerMin()), strconv.FormatInt(w.Etcd.RSSKiB, 10), f(w.MachineBusy), w.LoadAvg})
		keys := slices.SortedFunc(func(yield func(request) bool) {
			for k := range w.Requests {
				if !yield(k) {
					return
				}
			}
		}, func(a, b request) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			requests = append(requests, []string{string(w.Impl), k.Verb, k.Resource, f(w.Requests[k]), f(w.Window.Seconds()), f(w.perMin(w.Requests[k]))})
		}
	}
	return cost, requests
}

// writeCostFiles writes cost.csv and cost-requests.csv into dir.
func (cr *costRun) writeCostFiles(dir string) error {
	cost, requests := cr.costCSVs()
	if err := writeCSV(filepath.Join(dir, "cost.csv"), cost); err != nil {
		return err
	}
	return writeCSV(filepath.Join(dir, "cost-requests.csv"), requests)
}
