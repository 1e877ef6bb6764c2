package chaos

import (
	"context"
	"fmt"
	"math"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// lockStates watches every version of the lock and records each one that is in none of the states
// docs/design.md names:
//   - held: exactly one owner, the holder's Pod (v1 Pod, no controller flag), a holderIdentity of
//     "<pod name>_<pod UID>" naming that owner, and leaseDurationSeconds 2147483647;
//   - released: no holder, no owner, leaseDurationSeconds 1;
//   - absent (deleted: by the garbage collector once the holder's Pod is gone).
//
// It also checks that a lock object's term (leaseTransitions) never goes back.
type lockStates struct {
	mu    sync.Mutex
	bad   []string
	terms map[string]int32 // by lock UID
	seen  int
}

func watchLockStates(ctx context.Context, client kubernetes.Interface, ns, name string) *lockStates {
	ls := &lockStates{terms: map[string]int32{}}
	lw := cache.NewListWatchFromClient(client.CoordinationV1().RESTClient(), "leases", ns, fields.OneTermEqualSelector("metadata.name", name))
	informer := cache.NewSharedIndexInformer(lw, &coordinationv1.Lease{}, 0, cache.Indexers{})
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { ls.check(obj) },
		UpdateFunc: func(_, obj any) { ls.check(obj) },
	})
	if err != nil {
		Fail(err.Error())
	}
	go informer.RunWithContext(ctx) // the spec's context: the watch ends with the run
	cache.WaitForCacheSync(ctx.Done(), informer.HasSynced)
	return ls
}

func (ls *lockStates) check(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.seen++
	if err := lockState(l); err != nil {
		ls.bad = append(ls.bad, fmt.Sprintf("resourceVersion %s: %v", l.ResourceVersion, err))
	}
	if l.Spec.LeaseTransitions != nil {
		term, uid := *l.Spec.LeaseTransitions, string(l.UID)
		if prev, ok := ls.terms[uid]; ok && term < prev {
			ls.bad = append(ls.bad, fmt.Sprintf("resourceVersion %s: term went back from %d to %d", l.ResourceVersion, prev, term))
		}
		ls.terms[uid] = term
	}
}

func lockState(l *coordinationv1.Lease) error {
	holder, duration := "", int32(0)
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseDurationSeconds != nil {
		duration = *l.Spec.LeaseDurationSeconds
	}
	switch {
	case holder == "" && len(l.OwnerReferences) == 0 && duration == 1:
		return nil // released
	case len(l.OwnerReferences) != 1:
		return fmt.Errorf("holder %q with %d owners", holder, len(l.OwnerReferences))
	}
	o := l.OwnerReferences[0]
	switch {
	case o.APIVersion != "v1" || o.Kind != "Pod" || o.Controller != nil && *o.Controller:
		return fmt.Errorf("owner %s %s is not a plain Pod reference", o.APIVersion, o.Kind)
	case holder != o.Name+"_"+string(o.UID):
		return fmt.Errorf("holder %q does not name its owner Pod %s (uid %s)", holder, o.Name, o.UID)
	case duration != math.MaxInt32:
		return fmt.Errorf("held lock with leaseDurationSeconds %d", duration)
	}
	return nil
}

// count returns how many versions of the lock were checked.
func (ls *lockStates) count() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.seen
}

// violations returns every version seen so far that was in no named state.
func (ls *lockStates) violations() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.bad...)
}
