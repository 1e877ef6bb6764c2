// Command candidate is one replica of an operator in the benchmark: a controller-runtime manager whose only
// leader-only work is a witness.Recorder, so that its first action as leader is recorded on the machine's
// monotonic clock and the API requests it makes are its election's alone (it has no controllers and no
// caches).
//
// -impl picks how it elects its leader:
//
//	life   lifelock, through manageropts (--leader-elect --leader-elect-mode=life)
//	lease  controller-runtime's Lease election with its defaults (15 s / 10 s / 2 s, no release on cancel)
//	oplib  operator-lib's leader.Become before the manager starts, as operator-lib's docs show
//
// -kind picks the object lifelock holds its lock in (-impl=life only): lease (the default) or configmap,
// operator-lib's format, so that life and oplib replicas using the same -lock exclude each other (the
// interop suite in ./interop runs them side by side).
//
// -witness-period sets the interval of the leader's witness heartbeats (default 5 ms, what the failover
// timings need); the cost scenario, with a hundred idle leaders, sets 1 s.
//
// -cpu-profile-dir makes it write its CPU profile into that directory in slices of -cpu-profile-slice
// (the benchmark kills its candidates, so a profile must end while the process runs), each file named by
// the lock, the Pod and the slice's start (bench -profile).
//
// The benchmark runs it as the container of a Pod (harness.StartPodProcess).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/operator-framework/operator-lib/leader"
	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness/witness"
)

func main() {
	impl := flag.String("impl", "", "election implementation: life, lease or oplib")
	lock := flag.String("lock", "", "name of the lock object")
	kind := flag.String("kind", "", "with -impl=life, the lock's kind: lease (the default) or configmap (operator-lib's format)")
	beat := flag.Duration("witness-period", witness.Period, "interval between the leader's witness heartbeats")
	profDir := flag.String("cpu-profile-dir", "", "a directory to write CPU profiles into, in slices")
	profSlice := flag.Duration("cpu-profile-slice", 5*time.Second, "the length of each CPU profile slice")
	flag.Parse()
	if *profDir != "" {
		if err := profileSlices(*profDir, *lock, *profSlice); err != nil {
			fmt.Fprintf(os.Stderr, "candidate: %v\n", err)
			os.Exit(1)
		}
	}
	ctrl.SetLogger(zap.New(func(o *zap.Options) { o.TimeEncoder = zapcore.RFC3339NanoTimeEncoder }))
	if err := run(ctrl.SetupSignalHandler(), *impl, *lock, lifelock.Kind(*kind), *beat); err != nil {
		fmt.Fprintf(os.Stderr, "candidate: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, impl, lock string, kind lifelock.Kind, beat time.Duration) error {
	if lock == "" {
		return fmt.Errorf("-lock is empty; name the lock object")
	}
	if kind != "" && impl != "life" {
		return fmt.Errorf("-kind=%s applies to -impl=life only, not -impl=%s", kind, impl)
	}
	podName, err := os.Hostname() // in a Pod (and in the harness's sandbox) the hostname is the Pod's name
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mo := manager.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElectionID:       lock,
	}
	var mgr manager.Manager
	switch impl {
	case "life", "lease":
		mo.LeaderElection = true
		opts := &manageropts.Options{Mode: manageropts.Mode(impl), Lock: lifelock.Options{Kind: kind}}
		mgr, err = opts.NewManager(cfg, mo)
	case "oplib":
		// operator-lib reads its Pod's name from POD_NAME, which its docs have the Deployment set through the
		// downward API; the harness's sandbox sets only the hostname, which is the same name.
		if err := os.Setenv("POD_NAME", podName); err != nil {
			return err
		}
		if err := leader.Become(ctx, lock); err != nil {
			return fmt.Errorf("operator-lib leader.Become: %w", err)
		}
		mgr, err = manager.New(cfg, mo)
	default:
		return fmt.Errorf("-impl=%q: use life, lease or oplib", impl)
	}
	if err != nil {
		return err
	}
	if err := mgr.Add(witness.Recorder{Who: podName, Period: beat}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// profileSlices starts writing this process's CPU profile into dir, a file per slice, until it exits.
func profileSlices(dir, lock string, slice time.Duration) error {
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	next := func() (*os.File, error) {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s-%d.pprof", lock, host, time.Now().UnixNano())))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return nil, err
		}
		return f, nil
	}
	f, err := next()
	if err != nil {
		return fmt.Errorf("-cpu-profile-dir: %w", err)
	}
	go func() {
		for {
			time.Sleep(slice)
			pprof.StopCPUProfile()
			_ = f.Close()
			if f, err = next(); err != nil {
				fmt.Fprintf(os.Stderr, "candidate: -cpu-profile-dir: %v; profiling stops\n", err)
				return
			}
		}
	}()
	return nil
}
