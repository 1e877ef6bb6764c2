package lifelock

import "testing"

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
