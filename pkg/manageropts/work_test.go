package manageropts

import (
	"context"
	"errors"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

type runnable struct{}

func (r runnable) Start(ctx context.Context) error { <-ctx.Done(); return nil }

type electionRunnable struct {
	runnable
	need bool
}

func (r electionRunnable) NeedLeaderElection() bool { return r.need }

type warmRunnable struct{ electionRunnable }

func (warmRunnable) Warmup(context.Context) error { return nil }

// The lock may release on shutdown only once every runnable that runs only while leading has returned;
// runnables that run on followers too are not counted.
func TestLeaderWorkCountsLeaderOnlyRunnables(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       manager.Runnable
		counted bool
	}{
		{"a plain runnable runs only while leading", runnable{}, true},
		{"NeedLeaderElection true", electionRunnable{need: true}, true},
		{"NeedLeaderElection false", electionRunnable{need: false}, false},
		{"a controller (warmed up, leader-only)", warmRunnable{electionRunnable{need: true}}, true},
		{"an HTTP server", &manager.Server{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &leaderWork{}
			w.track(nil)
			wrapped := w.wrap(tc.r)
			if got := w.stopped(); got == tc.counted {
				t.Fatalf("stopped() = %v right after adding; counted = %v", got, tc.counted)
			}
			if !tc.counted {
				if wrapped != tc.r {
					t.Fatal("a runnable that is not leader-only was wrapped")
				}
				return
			}
			if _, ok := tc.r.(warmupRunnable); ok {
				if _, ok := wrapped.(warmupRunnable); !ok {
					t.Fatal("the wrapper hides Warmup: the manager would not warm the controller up")
				}
			}
			if le, ok := wrapped.(manager.LeaderElectionRunnable); !ok || !le.NeedLeaderElection() {
				t.Fatal("the wrapper does not run only while leading")
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() { done <- wrapped.Start(ctx) }()
			if w.stopped() {
				t.Fatal("stopped while the runnable runs")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !w.stopped() {
				t.Fatal("not stopped after the runnable returned")
			}
		})
	}
	if w := (&leaderWork{}); w.stopped() {
		t.Fatal("a manager that does not count its runnables says they stopped")
	}
}

// A loss the lock's watches show stops the leader-only runnables at once, without waiting for the elector,
// and the error it returns stops the manager, even while a runnable ignores its context (the process then
// exits, as after controller-runtime's own "leader election lost"); the runnable counts until it returns.
func TestLeaderWorkStopsAtTheLoss(t *testing.T) {
	lost := make(chan struct{})
	w := &leaderWork{}
	w.track(lost)
	if !w.stopsOnLost() {
		t.Fatal("a manager that counts its runnables does not say it stops on Lost")
	}
	unblock := make(chan struct{})
	returned := make(chan struct{})
	wrapped := w.wrap(manager.RunnableFunc(func(context.Context) error {
		<-unblock // ignores its context
		close(returned)
		return nil
	}))
	done := make(chan error)
	go func() { done <- wrapped.Start(t.Context()) }()
	close(lost)
	if err := <-done; !errors.Is(err, lifelock.ErrLockLost) {
		t.Fatalf("Start after the loss = %v, want ErrLockLost", err)
	}
	if w.stopped() {
		t.Fatal("stopped while the runnable still runs")
	}
	close(unblock)
	<-returned
	for !w.stopped() {
		select {
		case <-t.Context().Done():
			t.Fatal("not stopped after the runnable returned")
		case <-time.After(time.Millisecond):
		}
	}
	if (&leaderWork{}).stopsOnLost() {
		t.Fatal("a manager that does not count its runnables says it stops on Lost")
	}
}

// LockOf knows only the managers this package wrapped in life mode.
func TestLockOfOtherManagers(t *testing.T) {
	if lock, ok := LockOf(nil); ok || lock != nil {
		t.Fatalf("LockOf(nil) = %v, %v", lock, ok)
	}
	if lock, ok := LockOf(&lifeManager{}); !ok || lock != nil {
		t.Fatalf("LockOf(a life manager) = %v, %v; want its (here nil) lock and ok", lock, ok)
	}
}
