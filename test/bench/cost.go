package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// The cluster-scale cost scenario answers a platform team's question, "what does this cost my API
// server?": many locks, each with a few candidates, all idle (every lock has its leader and the followers
// have settled), for one window per implementation, and one window with no candidates at all before them.
// Over each window it reads what kube-apiserver served (apiserver_request_total), the watches it holds
// open, its CPU time and memory (from /proc and its /metrics), and etcd's CPU time and memory.

// costConfig says how large the cost scenario is.
type costConfig struct {
	locks   int           // locks, each with its own candidates
	perLock int           // candidates per lock
	window  time.Duration // the idle window measured for each implementation and the baseline
}

// costWindow is what the control plane did over one idle window.
type costWindow struct {
	Impl    impl // "none" for the baseline
	Locks   int  // locks with candidates (0 for the baseline)
	PerLock int
	Window  time.Duration
	// Leaders is the number of locks with exactly one acting candidate at the end of the window.
	Leaders int
	// Requests is apiserver_request_total over the window, every verb (a WATCH counts once it ends), less
	// kube-apiserver's renewals of its own identity Lease (OwnLeaseWrites), which every window has alike.
	Requests       requestCounts
	OwnLeaseWrites float64
	// WatchesStart and WatchesEnd are the watches open (apiserver_longrunning_requests, verb WATCH, over
	// every resource) at the start and the end of the window; Watches are those at the end by resource.
	WatchesStart, WatchesEnd float64
	Watches                  requestCounts
	// APIServer and Etcd are the CPU time each process used over the window and its RSS at the end.
	APIServer, Etcd procStat
	// HeapLiveBytes is kube-apiserver's go_gc_heap_live_bytes at the end: the heap its last GC found live.
	HeapLiveBytes float64
	// Goroutines is kube-apiserver's go_sched_goroutines_goroutines at the end.
	Goroutines float64
	// MachineBusy is the share of all cores' time the machine spent busy over the window (every process,
	// the candidates' and anything else running), and LoadAvg is /proc/loadavg at the end.
	MachineBusy float64
	LoadAvg     string
}

// costRun is the cost scenario's result: the baseline window, then one window per implementation.
type costRun struct {
	Cfg      costConfig
	Baseline *costWindow
	Windows  []*costWindow
}

// cost runs the cost scenario: a baseline window, then for each implementation locks × perLock candidates
// started, settled, measured over one window and removed.
func (b *bench) cost(ctx context.Context) (*costRun, error) {
	cfg := b.cfg.cost
	cr := &costRun{Cfg: cfg}
	b.logf("cost: baseline window of %s, no candidates", cfg.window)
	base, err := b.costWindow(ctx, none, nil)
	if err != nil {
		return nil, fmt.Errorf("cost baseline window: %w", err)
	}
	cr.Baseline = base
	b.logf("cost: baseline: %s", base.summary())
	for _, i := range b.cfg.impls {
		w, err := b.costImpl(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("cost of %s: %w", i, err)
		}
		cr.Windows = append(cr.Windows, w)
		b.logf("cost: %s: %s", i, w.summary())
	}
	return cr, nil
}

// none names the baseline window, with no candidates.
const none impl = "none"

// costBeat is the interval of the cost scenario's witness heartbeats: a hundred leaders beating every 5 ms,
// as the failover timings need, would take the machine's 2 cores from the control plane it measures.
const costBeat = time.Second

// costStartParallel is how many locks get their candidates at once. Higher would only queue on 2 cores.
const costStartParallel = 4

// costImpl starts the cost scenario's candidates of implementation i in a namespace of their own, waits
// until every lock has a leader and the followers settled, measures one window, and removes everything it
// made (the processes, their Pods and the locks) before it returns.
func (b *bench) costImpl(ctx context.Context, i impl) (w *costWindow, err error) {
	cfg := b.cfg.cost
	ns, err := b.cp.CreateNamespace(ctx, "cost-"+string(i))
	if err != nil {
		return nil, err
	}
	groups := make([]*group, cfg.locks)
	defer func() {
		err = errors.Join(err, b.costCleanup(ctx, ns, groups))
	}()
	start := time.Now()
	sem := make(chan struct{}, costStartParallel)
	errs := make([]error, cfg.locks)
	var wg sync.WaitGroup
	for k := range cfg.locks {
		g, err := b.newGroup(i, ns, fmt.Sprintf("lock-%d", k))
		if err != nil {
			return nil, err
		}
		g.args = []string{"-witness-period=" + costBeat.String()}
		groups[k] = g
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[k] = g.add(ctx, cfg.perLock)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, g := range groups {
		if _, err := g.leader(ctx); err != nil {
			return nil, err
		}
	}
	b.logf("cost: %s: %d locks × %d candidates joined and every lock has its leader after %s; window of %s after %s",
		i, cfg.locks, cfg.perLock, time.Since(start).Round(time.Second), cfg.window, settle(i))
	if err := sleep(ctx, settle(i)); err != nil {
		return nil, err
	}
	return b.costWindow(ctx, i, groups)
}

// costCleanup stops the candidates of groups, then deletes every Pod, Lease and ConfigMap in ns and waits
// until they are gone, so that nothing of one implementation is left in the next one's window.
func (b *bench) costCleanup(ctx context.Context, ns string, groups []*group) error {
	var errs []error
	for _, g := range groups {
		if g == nil {
			continue
		}
		overlaps, err := g.stop()
		if err != nil {
			errs = append(errs, fmt.Errorf("reading the witness records of %s/%s: %w", g.ns, g.lock, err))
		}
		if overlaps > 0 {
			errs = append(errs, fmt.Errorf("two candidates of %s/%s acted at once", g.ns, g.lock))
		}
	}
	core, coord := b.cp.Client.CoreV1(), b.cp.Client.CoordinationV1()
	all := metav1.ListOptions{}
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	errs = append(errs,
		core.Pods(ns).DeleteCollection(ctx, now, all),
		coord.Leases(ns).DeleteCollection(ctx, now, all),
		core.ConfigMaps(ns).DeleteCollection(ctx, now, all))
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := core.Pods(ns).List(ctx, all)
		if err != nil {
			return false, err
		}
		leases, err := coord.Leases(ns).List(ctx, all)
		if err != nil {
			return false, err
		}
		cms, err := core.ConfigMaps(ns).List(ctx, all)
		if err != nil {
			return false, err
		}
		return len(pods.Items)+len(leases.Items)+len(cms.Items) == 0, nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("waiting for the Pods and locks of %s to be gone: %w", ns, err))
	}
	return errors.Join(errs...)
}

// costWindow measures the control plane over one window while groups (none for the baseline) idle. The
// bench itself makes no API request inside the window: it scrapes /metrics just before and just after.
func (b *bench) costWindow(ctx context.Context, i impl, groups []*group) (*costWindow, error) {
	cfg := b.cfg.cost
	w := &costWindow{Impl: i, Window: cfg.window}
	if len(groups) > 0 {
		w.Locks, w.PerLock = len(groups), cfg.perLock
	}
	apiPID, err := b.cp.APIServerPID()
	if err != nil {
		return nil, err
	}
	etcdPID, err := b.cp.EtcdPID()
	if err != nil {
		return nil, err
	}
	own, err := watchOwnLeaseWrites(ctx, b.cp.Client)
	if err != nil {
		return nil, err
	}
	defer own.stop()

	// The identity Lease's renewals are told apart by their renewal time: those between the starts of the
	// two scrapes are the ones the scrapes' difference counts, but for a write within milliseconds of either.
	t0 := time.Now()
	before, err := scrapeMetrics(ctx, b.cp.Client)
	if err != nil {
		return nil, err
	}
	apiBefore, err := readProcStat(apiPID)
	if err != nil {
		return nil, err
	}
	etcdBefore, err := readProcStat(etcdPID)
	if err != nil {
		return nil, err
	}
	busyBefore, totalBefore, err := readMachineCPU()
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, cfg.window); err != nil {
		return nil, err
	}
	busyAfter, totalAfter, err := readMachineCPU()
	if err != nil {
		return nil, err
	}
	if w.APIServer, err = readProcStat(apiPID); err != nil {
		return nil, err
	}
	if w.Etcd, err = readProcStat(etcdPID); err != nil {
		return nil, err
	}
	t1 := time.Now()
	after, err := scrapeMetrics(ctx, b.cp.Client)
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, time.Second); err != nil { // for the watch to deliver the renewals up to t1
		return nil, err
	}
	w.OwnLeaseWrites = float64(own.renewedBetween(t0, t1))
	w.APIServer.CPUSeconds = cpuDelta(w.APIServer, apiBefore)
	w.Etcd.CPUSeconds = cpuDelta(w.Etcd, etcdBefore)
	if totalAfter > totalBefore {
		w.MachineBusy = float64(busyAfter-busyBefore) / float64(totalAfter-totalBefore)
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(la)); len(f) >= 3 {
			w.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	w.Requests = after.Requests.minus(before.Requests)
	ownReq := request{Verb: "PUT", Resource: "leases"}
	if w.Requests[ownReq] -= w.OwnLeaseWrites; w.Requests[ownReq] == 0 {
		delete(w.Requests, ownReq)
	}
	all := func(request) bool { return true }
	w.WatchesStart, w.WatchesEnd, w.Watches = before.Watches.sum(all), after.Watches.sum(all), after.Watches
	w.HeapLiveBytes, w.Goroutines = after.HeapLiveBytes, after.Goroutines

	// Every candidate must still run, and every lock have one leader, or the window measured something else.
	for _, g := range groups {
		for _, c := range g.cands {
			select {
			case <-c.proc.Done():
				return nil, fmt.Errorf("candidate %s exited during the window (code %d):\n%s", c.pod.Name, c.proc.ExitCode(), tail(c.proc.Output()))
			default:
			}
		}
		h, err := g.witness.Read()
		if err != nil {
			return nil, err
		}
		acting := 0
		for _, s := range h.Spans() {
			if !s.Stopped {
				acting++
			}
		}
		if acting == 1 {
			w.Leaders++
		}
	}
	if w.Leaders != len(groups) {
		return nil, fmt.Errorf("%d of %d locks had exactly one leader at the end of the window", w.Leaders, len(groups))
	}
	return w, nil
}

// cpuDelta is the CPU time used between two readings, in whole clock ticks as the kernel counts it.
func cpuDelta(after, before procStat) float64 {
	return math.Round((after.CPUSeconds-before.CPUSeconds)*clockTicks) / clockTicks
}

// readMachineCPU reads the machine's CPU time from /proc/stat, in clock ticks: busy and total.
func readMachineCPU() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine parses /proc/stat's first line ("cpu user nice system idle iowait irq softirq steal guest
// guest_nice"): busy is every time but idle and iowait; guest time is already in user and nice.
func parseCPULine(line string) (busy, total uint64, err error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var idle uint64
	for k, s := range f[1:min(len(f), 9)] { // user .. steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += v
		if k == 3 || k == 4 { // idle, iowait
			idle += v
		}
	}
	return total - idle, total, nil
}
