// Package witness records, from inside a candidate process, when its leader-only work runs: a line when it
// starts acting, a heartbeat every Period while it acts, and a line when it stops. Every line is stamped
// with CLOCK_MONOTONIC, which all processes on one machine share, so the harness can merge the records of
// many processes into one history (harness.ReadWitness) and check that no two acting intervals overlap.
//
// It depends on nothing but the standard library and golang.org/x/sys/unix, so a test can copy this file
// into a project that does not import lifelock (a stock kubebuilder scaffold) and build it there.
package witness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DirEnv names the environment variable holding the directory the records are written to.
const DirEnv = "LIFELOCK_WITNESS_DIR"

// Period is the interval between heartbeats while acting.
const Period = 5 * time.Millisecond

// Now reads CLOCK_MONOTONIC: the same clock in every process on the machine.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("witness: reading CLOCK_MONOTONIC: %v", err)) // cannot fail on Linux
	}
	return time.Duration(ts.Nano())
}

// Recorder is a controller-runtime Runnable that needs leader election: the manager starts it with its
// controllers once it leads, and cancels it with them. Add it with mgr.Add(witness.Recorder{}).
type Recorder struct {
	// Who names the candidate in the record. Default: the hostname, which in a Pod is the Pod's name.
	Who string
	// Period is the interval between heartbeats. Default: Period. A longer one suits a run of many idle
	// leaders that no one fails over, where the default's 200 writes a second each would fill the machine;
	// the reader takes a leader as stopped once it has been silent for 60 periods.
	Period time.Duration
}

// NeedLeaderElection makes the manager start the recorder only once it leads.
func (Recorder) NeedLeaderElection() bool { return true }

// Start records the acting interval until ctx is cancelled. It writes each line with one unbuffered
// write, so a process killed with SIGKILL loses at most the heartbeat it was about to write.
func (r Recorder) Start(ctx context.Context) error {
	dir := os.Getenv(DirEnv)
	if dir == "" {
		return fmt.Errorf("witness: %s is unset; set it to the directory the test reads", DirEnv)
	}
	who := r.Who
	if who == "" {
		var err error
		if who, err = os.Hostname(); err != nil {
			return fmt.Errorf("witness: naming the candidate: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", who, os.Getpid())), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	defer func() { _ = f.Close() }()
	write := func(line string) error {
		_, err := f.WriteString(line + "\n")
		return err
	}
	period := r.Period
	if period <= 0 {
		period = Period
	}
	if err := write(fmt.Sprintf("%d start %s %d", Now(), who, period)); err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return write(fmt.Sprintf("%d stop", Now()))
		case <-tick.C:
			if err := write(fmt.Sprintf("%d beat", Now())); err != nil {
				return fmt.Errorf("witness: %w", err)
			}
		}
	}
}
