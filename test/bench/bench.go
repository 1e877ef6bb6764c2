package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/lifelock/lifelock/test/harness"
)

// config says how much the benchmark measures.
type config struct {
	ns       []int         // candidates per lock
	impls    []impl        // implementations, in the report's order
	reps     int           // failovers per scenario, implementation and N
	window   time.Duration // steady-state window
	maxProcs int           // most candidate processes run at once for one implementation and N
	// maxRounds bounds the failover rounds of the slow implementations: their failovers run in that many
	// rounds, in parallel groups (each its own lock with N candidates), as far as maxProcs allows.
	maxRounds int
	trace     bool       // print each life failover's timeline
	profile   string     // a directory for CPU profiles of the candidates and kube-apiserver (profile.go); empty: none
	cost      costConfig // the cluster-scale cost scenario (cost.go); no locks: not run
}

// settle is how long a new group is left alone before its steady-state window: long enough for every
// candidate's retry loop to reach its steady period (operator-lib's backoff doubles from 1 s to 16 s).
func settle(i impl) time.Duration {
	switch i {
	case oplib:
		return 16 * time.Second
	case lease:
		return 4 * time.Second
	default:
		return 2 * time.Second
	}
}

// groups returns how many locks with n candidates each run the failovers of i.
func (c config) groups(i impl, n int) int {
	if i == life { // fast: one lock, failovers one after another, on an otherwise idle machine
		return 1
	}
	k := (2*c.reps + c.maxRounds - 1) / c.maxRounds
	return max(1, min(k, c.maxProcs/n))
}

type bench struct {
	cfg          config
	cp           *harness.ControlPlane
	candidateBin string
	workDir      string
	nodes        []string
	logf         func(format string, args ...any)
	baseWatches  requestCounts // open before any candidate ran (the baseline window sets it)
}

// sample is one failover.
type sample struct {
	Group    int
	Latency  time.Duration
	From, To string // the Pods of the old and the new leader
}

// procSample is one candidate's resource use over the steady-state window.
type procSample struct {
	Pod        string
	Leader     bool
	RSSKiB     int64
	CPUSeconds float64
}

// result is what was measured for one implementation and N.
type result struct {
	Impl     impl
	N        int
	Window   time.Duration
	Requests requestCounts // by the candidates over Window: apiserver_request_total, less the API server's own
	// OwnLeaseWrites are the API server's renewals of its identity Lease during Window, left out of Requests.
	OwnLeaseWrites float64
	// Watches are the watches the candidates hold open at the end of Window.
	Watches   requestCounts
	Procs     []procSample
	Groups    int
	Failovers map[scenario][]sample
	Overlaps  int // groups whose acting intervals overlapped
}

// run measures implementation i with n candidates per lock.
func (b *bench) run(ctx context.Context, i impl, n int) (*result, error) {
	ns, err := b.cp.CreateNamespace(ctx, fmt.Sprintf("bench-%s-%d", i, n))
	if err != nil {
		return nil, err
	}
	res := &result{Impl: i, N: n, Window: b.cfg.window, Groups: b.cfg.groups(i, n), Failovers: map[scenario][]sample{}}
	var groups []*group
	defer func() {
		for _, g := range groups {
			overlaps, err := g.stop()
			if err != nil {
				b.logf("reading the witness records of %s/%s: %v", g.ns, g.lock, err)
			}
			res.Overlaps += overlaps
		}
	}()

	// Steady state: one lock, n candidates.
	g, err := b.newGroup(i, ns, "lock-0")
	if err != nil {
		return nil, err
	}
	groups = append(groups, g)
	if err := g.add(ctx, n); err != nil {
		return nil, err
	}
	if _, err := g.leader(ctx); err != nil {
		return nil, err
	}
	b.logf("%s N=%d: %d candidates joined; steady-state window of %s after %s", i, n, n, b.cfg.window, settle(i))
	if err := sleep(ctx, settle(i)); err != nil {
		return nil, err
	}
	if err := b.steady(ctx, g, res); err != nil {
		return nil, err
	}

	// Failovers: more locks run in parallel for the slow implementations.
	for k := 1; k < res.Groups; k++ {
		g, err := b.newGroup(i, ns, fmt.Sprintf("lock-%d", k))
		if err != nil {
			return nil, err
		}
		groups = append(groups, g)
		if err := g.add(ctx, n); err != nil {
			return nil, err
		}
	}
	// Every group takes the next failover in turn; a round runs one failover in each group at once.
	var jobs []scenario
	for _, sc := range allScenarios {
		for range b.cfg.reps {
			jobs = append(jobs, sc)
		}
	}
	start := time.Now()
	profiled := make(chan error, 1)
	if b.cfg.profile != "" {
		pctx, stopProfile := context.WithCancel(ctx)
		go func() { profiled <- profileAPIServer(pctx, b.cp, b.cfg.profile) }()
		defer func() {
			stopProfile()
			if err := <-profiled; err != nil {
				b.logf("%v", err)
			}
		}()
	}
	for len(jobs) > 0 {
		round := jobs[:min(len(groups), len(jobs))]
		jobs = jobs[len(round):]
		samples := make([]sample, len(round))
		errs := make([]error, len(round))
		var wg sync.WaitGroup
		for k, sc := range round {
			wg.Go(func() {
				samples[k], errs[k] = groups[k].failover(ctx, sc)
				samples[k].Group = k
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for k, sc := range round {
			res.Failovers[sc] = append(res.Failovers[sc], samples[k])
		}
	}
	b.logf("%s N=%d: %d failovers in %d lock(s), %s; p50 crash %s, hand-off %s", i, n, len(allScenarios)*b.cfg.reps, len(groups), time.Since(start).Round(time.Second),
		percentile(latencies(res.Failovers[crash]), 0.5), percentile(latencies(res.Failovers[handoff]), 0.5))
	if b.cfg.profile != "" {
		end := time.Now()
		// The candidates' slices that cover the last failovers end within one slice; then they are killed.
		if err := sleep(ctx, profileSlice+time.Second); err != nil {
			return nil, err
		}
		b.logf("%s N=%d: CPU profiles over these failovers (and up to %s either side):\n  candidates:     %s\n  kube-apiserver: %s",
			i, n, profileSlice, profileCommand(b.cfg.profile, "candidates", start, end), profileCommand(b.cfg.profile, "kube-apiserver", start, end))
	}
	return res, nil
}

// steady measures, over the window, the API requests of g's candidates and their resource use.
func (b *bench) steady(ctx context.Context, g *group, res *result) error {
	own, err := watchOwnLeaseWrites(ctx, b.cp.Client)
	if err != nil {
		return err
	}
	defer own.stop()

	type stat struct {
		c      *candidate
		before procStat
	}
	var stats []stat
	for _, c := range g.cands {
		ps, err := readProcStat(c.proc.Pid())
		if err != nil {
			return err
		}
		stats = append(stats, stat{c, ps})
	}
	before, err := scrapeMetrics(ctx, b.cp.Client)
	if err != nil {
		return err
	}
	ownBefore := own.count()
	if err := sleep(ctx, b.cfg.window); err != nil {
		return err
	}
	after, err := scrapeMetrics(ctx, b.cp.Client)
	if err != nil {
		return err
	}
	res.OwnLeaseWrites = float64(own.count() - ownBefore)
	res.Requests = after.Requests.minus(before.Requests)
	// A watch is counted when it ends; the ones that ended in the window are the control plane's own
	// (kube-controller-manager renews its watches every 5 to 10 minutes). What the candidates hold is the
	// number of watches open, over what was open before any candidate ran.
	for r := range res.Requests {
		if r.Verb == "WATCH" {
			delete(res.Requests, r)
		}
	}
	if b.baseWatches == nil {
		b.baseWatches = after.Watches
	}
	res.Watches = after.Watches.minus(b.baseWatches)
	ownReq := request{Verb: "PUT", Resource: "leases"}
	if res.Requests[ownReq] -= res.OwnLeaseWrites; res.Requests[ownReq] == 0 {
		delete(res.Requests, ownReq)
	}
	var leader *candidate
	if len(g.cands) > 0 {
		if leader, err = g.leader(ctx); err != nil {
			return err
		}
	}
	for _, s := range stats {
		ps, err := readProcStat(s.c.proc.Pid())
		if err != nil {
			return err
		}
		res.Procs = append(res.Procs, procSample{Pod: s.c.pod.Name, Leader: s.c == leader, RSSKiB: ps.RSSKiB, CPUSeconds: ps.CPUSeconds - s.before.CPUSeconds})
	}
	sort.Slice(res.Procs, func(a, b int) bool { return res.Procs[a].Pod < res.Procs[b].Pod })
	return nil
}

// ownLeaseWrites counts kube-apiserver's renewals of its own identity Lease (every 10 s), so that a
// window can leave them out. (The bench's control plane runs without the endpoint reconciler, its other
// periodic work.)
type ownLeaseWrites struct {
	w      watch.Interface
	writes atomic.Int64
	mu     sync.Mutex
	renews []time.Time // each write's spec.renewTime
}

// watchOwnLeaseWrites starts counting the writes to the Leases in kube-system.
func watchOwnLeaseWrites(ctx context.Context, c kubernetes.Interface) (*ownLeaseWrites, error) {
	list, err := c.CoordinationV1().Leases(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	w, err := c.CoordinationV1().Leases(metav1.NamespaceSystem).Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return nil, err
	}
	o := &ownLeaseWrites{w: w}
	go func() {
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok && ev.Type == watch.Modified {
				o.writes.Add(1)
				if l.Spec.RenewTime != nil {
					o.mu.Lock()
					o.renews = append(o.renews, l.Spec.RenewTime.Time)
					o.mu.Unlock()
				}
			}
		}
	}()
	return o, nil
}

func (o *ownLeaseWrites) count() int64 { return o.writes.Load() }

// renewedBetween counts the writes whose renewal time is in (t0, t1]. Unlike count's difference over a
// window, it does not depend on when the watch delivers the event, which can be after a scrape of
// /metrics that already counts the write; it needs the events up to t1 delivered, so the caller waits a
// moment after t1.
func (o *ownLeaseWrites) renewedBetween(t0, t1 time.Time) int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var n int64
	for _, t := range o.renews {
		if t.After(t0) && !t.After(t1) {
			n++
		}
	}
	return n
}

func (o *ownLeaseWrites) stop() { o.w.Stop() }

// sleep waits for d: the steady-state window is a measurement over wall time, not a wait for a condition.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
