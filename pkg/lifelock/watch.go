package lifelock

import (
	"cmp"
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// This file keeps the lock's view of the cluster: a watch of the lock object and a watch of its holder's
// Pod, both narrowed to one object by name. Everything the lock decides is read from here (plus one live
// GET before a takeover). The state is guarded by Lock.mu; every change is broadcast on Lock.changed.

// view is the watched state. All fields are guarded by Lock.mu.
type view struct {
	leaseSynced bool
	lease       *coordinationv1.Lease // nil when the lock does not exist
	watchErr    error                 // the lock watch's last failure; nil while it works
	brokenSince time.Time             // when watchErr was first set

	// holder is the last Pod seen owning the lock, and holderID its identity. They outlive the lock object:
	// a lock that vanishes while its holder's Pod lives is not free.
	holder   *PodRef
	holderID string
	pods     *objectWatch[corev1.Pod]
	nodes    *objectWatch[corev1.Node] // the holder's Node, when Nodes may be read
	stopped  map[string]bool           // Pod UIDs seen being deleted gracefully with every container terminated
	// releasedBy is the holder that released the lock, while the lock seen last was released.
	releasedBy string

	// pending is a write of ours the watch has not shown yet.
	pending *pendingWrite
}

type pendingWrite struct {
	uid, judgedRV string
	seen          bool
}

// objectWatch watches one object, by name.
type objectWatch[T any] struct {
	name   string
	cancel context.CancelFunc
	synced bool
	obj    *T // nil when absent
}

// notifyLocked wakes everything waiting for a change. Lock.mu must be held.
func (l *Lock) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// startWatches starts the lock watch. It runs until l.stop is called.
func (l *Lock) startWatches() {
	inf := l.newInformer(l.store.object(), l.name, l.store.list, l.store.watch, l.setWatchErr)
	l.run(l.ctx, inf, l.onLease, func() { l.leaseSynced = true })
}

// run runs inf until ctx ends, sending its events to on and calling synced (with Lock.mu held) once it has
// synced.
func (l *Lock) run(ctx context.Context, inf cache.SharedIndexInformer, on func(obj any, deleted bool), synced func()) {
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { on(obj, false) },
		UpdateFunc: func(_, obj any) { on(obj, false) },
		DeleteFunc: func(obj any) { on(obj, true) },
	})
	go inf.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			l.mu.Lock()
			synced()
			l.notifyLocked()
			l.mu.Unlock()
		}
	}()
}

// newInformer returns an informer for the one object named name. watchErr is called with every list or
// watch failure, and with nil whenever a list or watch is established.
func (l *Lock) newInformer(obj runtime.Object, name string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	watchErr func(error)) cache.SharedIndexInformer {
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			res, err := list(ctx, o)
			watchErr(err)
			return res, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			res, err := watchFn(ctx, o)
			watchErr(err)
			return res, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		watchErr(err)
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	return inf
}

func (l *Lock) setWatchErr(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil && l.watchErr != nil:
		l.watchErr = nil
		l.notifyLocked()
	case err != nil && l.watchErr == nil:
		l.watchErr = err
		l.brokenSince = time.Now()
		l.notifyLocked()
	case err != nil:
		l.watchErr = err
	}
}

func (l *Lock) onLease(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	lease, ok := l.store.canonical(obj)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.pending; p != nil && string(lease.UID) == p.uid && (deleted || lease.ResourceVersion != p.judgedRV) {
		p.seen = true
	}
	if deleted {
		l.lease = nil
	} else {
		l.lease = lease
		l.releasedBy = ""
		if owner, ok := podOwner(lease); ok {
			l.followHolderLocked(owner, holderOf(lease))
		} else {
			// Released, or a plain client-go lease: no Pod to wait for if it vanishes.
			if holderOf(lease) == "" {
				l.releasedBy = cmp.Or(lease.Annotations[ReleasedAnnotation], l.holderID, "its holder")
			}
			l.holder, l.holderID = nil, holderOf(lease)
		}
	}
	l.notifyLocked()
}

// followHolderLocked records the lock's holder and makes sure its Pod is watched. Lock.mu must be held.
func (l *Lock) followHolderLocked(owner PodRef, id string) {
	l.holder, l.holderID = &owner, id
	if l.pods != nil && l.pods.name == owner.Name {
		return
	}
	if l.pods != nil {
		l.pods.cancel()
	}
	ctx, cancel := context.WithCancel(l.ctx)
	w := &objectWatch[corev1.Pod]{name: owner.Name, cancel: cancel}
	l.pods = w
	inf := l.newInformer(&corev1.Pod{}, owner.Name,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return l.client.CoreV1().Pods(l.namespace).List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return l.client.CoreV1().Pods(l.namespace).Watch(ctx, o)
		},
		func(error) {})
	l.run(ctx, inf, func(obj any, deleted bool) { l.onPod(w, obj, deleted) }, func() { w.synced = true })
}

func (l *Lock) onPod(w *objectWatch[corev1.Pod], obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if provenStopped(pod) {
		l.stopped[string(pod.UID)] = true
	}
	if deleted {
		w.obj = nil
	} else {
		w.obj = pod
		if l.watchNodes && l.pods == w && pod.Spec.NodeName != "" {
			l.followNodeLocked(pod.Spec.NodeName)
		}
	}
	l.notifyLocked()
}

// followNodeLocked makes sure the Node named name is watched (the holder's Node, for the stuck-holder
// diagnosis and the out-of-service policy). Lock.mu must be held.
func (l *Lock) followNodeLocked(name string) {
	if l.nodes != nil && l.nodes.name == name {
		return
	}
	if l.nodes != nil {
		l.nodes.cancel()
	}
	ctx, cancel := context.WithCancel(l.ctx)
	w := &objectWatch[corev1.Node]{name: name, cancel: cancel}
	l.nodes = w
	inf := l.newInformer(&corev1.Node{}, name,
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return l.client.CoreV1().Nodes().List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return l.client.CoreV1().Nodes().Watch(ctx, o)
		},
		func(error) {})
	l.run(ctx, inf, func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		node, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if deleted {
			w.obj = nil
		} else {
			w.obj = node
		}
		l.notifyLocked()
	}, func() { w.synced = true })
}

// holderPodLocked returns what the Pod watch says about the holder: its verdict, or podUnknownVerdict while
// the watch has not synced. Lock.mu must be held.
func (l *Lock) holderPodLocked(h PodRef) podVerdict {
	if l.pods == nil || l.pods.name != h.Name || !l.pods.synced {
		return podUnknownVerdict
	}
	v := judgePod(l.pods.obj, h.UID)
	if v == podAlive && l.opts.TakeOverFromOutOfServiceNodes {
		if l.nodes == nil || l.nodes.name != l.pods.obj.Spec.NodeName || !l.nodes.synced {
			return podUnknownVerdict
		}
		if l.nodes.obj != nil && outOfService(l.nodes.obj) {
			return podOutOfService
		}
	}
	return v
}

// waitChange waits until the view changes, ctx ends, or d passes; it reports whether ctx is still live.
func (l *Lock) waitChange(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return false
	case <-l.ctx.Done():
		return false
	}
	return true
}
