package lifelock

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// A follower is ready once it could prove the holder stopped: its lock watch synced, and the watch of the
// holder's Pod synced.
func TestReadyCheckWaitsForTheWatchesThatProveTheHolderStopped(t *testing.T) {
	self := PodRef{Namespace: "ns", Name: "b", UID: "uid-b"}
	holder := PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}
	l := &Lock{namespace: "ns", name: "lock", core: newCore(self, coreConfig{})}
	c := l.core
	if err := l.ReadyCheck(nil); err == nil {
		t.Fatal("ready before the lock's watch synced")
	}
	c.lockSynced = true
	if err := l.ReadyCheck(nil); err != nil {
		t.Fatalf("not ready with a synced watch and no holder: %v", err)
	}
	c.holder = &holder
	if err := l.ReadyCheck(nil); err == nil {
		t.Fatal("ready before the holder's Pod is watched")
	}
	c.watchPod(holder.Name)
	if err := l.ReadyCheck(nil); err == nil {
		t.Fatal("ready before the watch of the holder's Pod synced")
	}
	c.pod.synced = true
	if err := l.ReadyCheck(nil); err != nil {
		t.Fatalf("not ready with both watches synced: %v", err)
	}
	c.holder = &self
	c.pod.synced = false
	if err := l.ReadyCheck(nil); err != nil {
		t.Fatalf("not ready while this Pod holds the lock: %v", err)
	}
}

// dropEvents is a resourcelock.EventRecorder that drops the Events.
type dropEvents struct{}

func (dropEvents) Eventf(runtime.Object, string, string, string, ...any) {}

// The watch shows this process's own release before the release write returns: that is no loss, and must
// not close Lost nor record LostLock; a holder-less lock it did not write is one.
func TestOwnReleaseIsNoLoss(t *testing.T) {
	self := PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}
	newLeader := func() *Lock {
		l := &Lock{namespace: "ns", name: "lock", store: leaseStore{}, lostCh: make(chan struct{}),
			opts: Options{EventRecorder: dropEvents{}}, core: newCore(self, coreConfig{})}
		l.core.phase, l.core.term, l.core.termUID = leading, Term{Number: 1, LockUID: "lock-uid", Revision: "5"}, "lock-uid"
		released := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lock", UID: "lock-uid", ResourceVersion: "6"}}
		l.core.lock = released // holder "": what the watch shows once the release is stored
		return l
	}
	lost := func(l *Lock) bool {
		select {
		case <-l.Lost():
			return true
		default:
			return false
		}
	}

	l := newLeader()
	l.releasing = true
	l.noteLossLocked()
	if lost(l) || l.lostReported {
		t.Fatal("its own release was reported as a loss")
	}

	l = newLeader()
	l.noteLossLocked()
	if !lost(l) || !l.lostReported {
		t.Fatal("a release it did not write was not reported as a loss")
	}
}
