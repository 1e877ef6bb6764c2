// Command bench compares leader election implementations on one local control plane (kube-apiserver, etcd
// and kube-controller-manager's garbage collector, from `make envtest`): lifelock in life mode,
// controller-runtime's Lease election with its defaults, and operator-lib's leader.Become.
//
// For each implementation and each number N of candidates per lock it measures the API requests the
// election makes in steady state (from kube-apiserver's apiserver_request_total), the candidates' memory and
// CPU, and the failover latency after a crash and after a graceful hand-off. Then it measures what many idle
// locks cost the API server (cost.go): requests, watches, kube-apiserver's CPU and memory, over a baseline.
// It writes results.md, five CSV files and failover.png into -out. Run it with `make bench` (or
// `make bench QUICK=1`); -cost-only runs the cost scenario alone.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifelock/lifelock/test/harness"
)

func main() {
	out := flag.String("out", "bench-results", "directory the results are written to")
	quick := flag.Bool("quick", false, "a short run: N=3 and 10, 5 failovers per scenario, 6 s windows, and the cost scenario with 10 locks × 3 and 10 s windows (rough numbers)")
	costOnly := flag.Bool("cost-only", false, "run only the cluster-scale cost scenario")
	costLocks := flag.Int("cost-locks", 0, "locks in the cost scenario (default 100, or 10 with -quick)")
	nsFlag := flag.String("ns", "", "comma-separated candidates per lock to measure instead of the default (e.g. 3,100)")
	implsFlag := flag.String("impls", "", "comma-separated implementations to measure instead of all (life, lease, oplib)")
	reps := flag.Int("reps", 0, "failovers per scenario instead of the default")
	noCost := flag.Bool("no-cost", false, "skip the cluster-scale cost scenario")
	trace := flag.Bool("trace", false, "print, for each life failover, when the lock changed and when the next leader acted, relative to the delete request")
	profile := flag.String("profile", "", "a directory to write CPU profiles of every candidate and of kube-apiserver into, in 5 s slices; after each group of failovers the bench prints the commands that merge the slices covering them")
	costWindow := flag.Duration("cost-window", 0, "idle window of the cost scenario, per implementation and for the baseline (default 60s, or 10s with -quick)")
	flag.Parse()
	cfg := config{ns: []int{3, 10, 100}, impls: allImpls, reps: 30, window: 30 * time.Second, maxProcs: 500, maxRounds: 4,
		cost: costConfig{locks: 100, perLock: 3, window: time.Minute}}
	how := "`make bench`"
	if *quick {
		cfg = config{ns: []int{3, 10}, impls: allImpls, reps: 5, window: 6 * time.Second, maxProcs: 100, maxRounds: 1,
			cost: costConfig{locks: 10, perLock: 3, window: 10 * time.Second}}
		how = "`make bench QUICK=1`"
	}
	if *costLocks > 0 {
		cfg.cost.locks = *costLocks
	}
	if *costWindow > 0 {
		cfg.cost.window = *costWindow
	}
	if *nsFlag != "" {
		cfg.ns = nil
		for _, f := range strings.Split(*nsFlag, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 2 {
				fmt.Fprintf(os.Stderr, "bench: -ns=%s: %q is not a number of candidates (2 or more)\n", *nsFlag, f)
				os.Exit(2)
			}
			cfg.ns = append(cfg.ns, n)
		}
	}
	if *implsFlag != "" {
		cfg.impls = nil
		for _, f := range strings.Split(*implsFlag, ",") {
			if !slices.Contains(allImpls, impl(f)) {
				fmt.Fprintf(os.Stderr, "bench: -impls=%s: %q is not one of %v\n", *implsFlag, f, allImpls)
				os.Exit(2)
			}
			cfg.impls = append(cfg.impls, impl(f))
		}
	}
	if *reps > 0 {
		cfg.reps = *reps
	}
	if *noCost {
		cfg.cost.locks = 0
	}
	cfg.trace = *trace
	if *profile != "" {
		dir, err := filepath.Abs(*profile)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: -profile=%s: %v\n", *profile, err)
			os.Exit(2)
		}
		cfg.profile = dir
	}
	if *nsFlag != "" || *implsFlag != "" || *reps > 0 || *noCost || *profile != "" {
		how = "`go run ./test/bench " + strings.Join(os.Args[1:], " ") + "`"
	}
	if *costOnly {
		cfg.ns = nil
		how = fmt.Sprintf("`go run ./test/bench -cost-only -cost-locks=%d -cost-window=%s`", cfg.cost.locks, cfg.cost.window)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := measure(ctx, cfg, how, *out); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func measure(ctx context.Context, cfg config, how, out string) error {
	started := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("%s %s\n", time.Since(started).Round(time.Second), fmt.Sprintf(format, args...))
	}
	work, err := os.MkdirTemp("", "lifelock-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()

	bin, err := harness.BuildBinary(ctx, ".", "./candidate", work)
	if err != nil {
		return fmt.Errorf("building the candidate: %w", err)
	}
	logf("built the candidate")

	// Without the endpoint reconciler, kube-apiserver's only periodic API requests are its identity-Lease
	// renewals, which the steady-state windows count separately.
	cp, err := harness.StartWith(ctx, harness.Options{APIServerFlags: map[string]string{"endpoint-reconciler-type": "none"}})
	if err != nil {
		return err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			logf("stopping the control plane: %v", err)
		}
	}()
	b := &bench{cfg: cfg, cp: cp, candidateBin: bin, workDir: work, logf: logf}
	for k := range 10 {
		name := fmt.Sprintf("bench-node-%d", k)
		if err := cp.EnsureNode(ctx, name); err != nil {
			return err
		}
		if err := cp.SetNodeReady(ctx, name, true); err != nil {
			return err
		}
		b.nodes = append(b.nodes, name)
	}
	logf("control plane up")

	rn := &run{Machine: machine(), Started: started, Cfg: cfg, How: how}
	if len(cfg.ns) > 0 {
		rn.Baseline = &result{Impl: none, Window: cfg.window}
		if err := b.steady(ctx, &group{b: b, cands: map[string]*candidate{}}, rn.Baseline); err != nil {
			return fmt.Errorf("baseline window: %w", err)
		}
		logf("baseline (no candidates): %s", rn.Baseline.breakdown())
	}
	for _, n := range cfg.ns {
		for _, i := range cfg.impls {
			r, err := b.run(ctx, i, n)
			if err != nil {
				return fmt.Errorf("%s with N=%d: %w", i, n, err)
			}
			rn.Results = append(rn.Results, r)
			logf("%s N=%d: %s", i, n, r.breakdown())
		}
	}
	// The cost scenario runs last, so that its hundreds of processes do not disturb the timings above.
	if cfg.cost.locks > 0 {
		if rn.Cost, err = b.cost(ctx); err != nil {
			return err
		}
	}
	rn.Took = time.Since(started)
	if err := rn.writeFiles(out); err != nil {
		return err
	}
	fmt.Print("\n" + rn.markdown())
	logf("wrote %s", out)
	return nil
}

// machine describes the CPU, the core count and the memory.
func machine() string {
	model := runtime.GOARCH
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					if kib, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						mem = fmt.Sprintf(", %d GiB", (kib+512*1024)/(1024*1024))
					}
				}
			}
		}
	}
	return fmt.Sprintf("%s, %d cores%s, %s, kube-apiserver v%s", model, runtime.NumCPU(), mem, runtime.Version(), harness.K8sVersion)
}
