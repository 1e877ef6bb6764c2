package lifelock

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// TestBecomeSeesALossThatStopsLeadingBeforeItStarted plays the order client-go may run Become's callbacks in
// when the lock is lost right after its acquisition: OnStoppedLeading before OnStartedLeading's goroutine.
// The loss must still run onLost, and Become must not return nil.
func TestBecomeSeesALossThatStopsLeadingBeforeItStarted(t *testing.T) {
	lock := &Lock{namespace: "ns", name: "lock", core: newCore(PodRef{}, coreConfig{})}
	lock.core.term = Term{Number: 1, LockUID: "uid", Revision: "7"}
	lock.core.phase = lost

	var gaveUp atomic.Bool
	elected := make(chan struct{})
	lostCalls := 0
	cb := becomeCallbacks(lock, &gaveUp, elected, func() { lostCalls++ })
	cb.OnStoppedLeading()
	cb.OnStartedLeading(t.Context())

	if lostCalls != 1 {
		t.Errorf("onLost ran %d times, want 1", lostCalls)
	}
	select {
	case <-elected:
	default:
		t.Fatal("elected is not closed")
	}
	_, err := electedTerm(lock)
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("electedTerm = %v, want ErrLockLost", err)
	}
	if strings.Contains(err.Error(), "%!") {
		t.Errorf("malformed error: %q", err)
	}
}

// TestBecomeGivingUpIsNoLoss: Become's context ended before it led; the elector stopping then is no loss.
func TestBecomeGivingUpIsNoLoss(t *testing.T) {
	lock := &Lock{namespace: "ns", name: "lock", core: newCore(PodRef{}, coreConfig{})}
	var gaveUp atomic.Bool
	gaveUp.Store(true)
	cb := becomeCallbacks(lock, &gaveUp, make(chan struct{}), func() { t.Error("onLost ran for a process that never led") })
	cb.OnStoppedLeading()
}
