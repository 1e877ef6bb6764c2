package lifelock

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// This file runs the lock's watches: the lock object, its holder's Pod and (when Nodes may be read) that
// Pod's Node, each narrowed to one object by name. Every event goes to the decision core (core.go), under
// Lock.mu; every change is broadcast on Lock.changed.

// notifyLocked wakes everything waiting for a change. Lock.mu must be held.
func (l *Lock) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
	l.noteLossLocked()
}

// startWatches starts the lock watch. It runs until l.stop is called.
func (l *Lock) startWatches() {
	inf := l.newInformer(l.store.object(), l.name, l.store.list, l.store.watch, l.setWatchErr)
	l.run(l.ctx, inf, l.onLease, func() { l.core.lockSynced = true })
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
	was := l.core.lockErr
	l.core.setLockErr(err, time.Now())
	if (was == nil) != (err == nil) {
		l.notifyLocked()
	}
}

func (l *Lock) onLease(obj any, deleted bool) {
	d, unknown := obj.(cache.DeletedFinalStateUnknown)
	if unknown {
		obj = d.Obj
	}
	lease, ok := l.store.canonical(obj)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if unknown {
		l.core.observeLockVanished(lease)
	} else {
		l.core.observeLock(lease, deleted)
	}
	l.followLocked()
	l.notifyLocked()
}

// followLocked makes sure the watches of the holder's Pod and Node follow what the core needs. Lock.mu
// must be held.
func (l *Lock) followLocked() {
	if name := l.core.wantPod(); name != "" && (l.podCancel == nil || l.core.pod.name != name) {
		if l.podCancel != nil {
			l.podCancel()
		}
		l.core.watchPod(name)
		l.podCancel = l.watchOne(&corev1.Pod{}, name,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return l.client.CoreV1().Pods(l.namespace).List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return l.client.CoreV1().Pods(l.namespace).Watch(ctx, o)
			},
			func(obj any, deleted bool) {
				if pod, ok := obj.(*corev1.Pod); ok {
					l.core.observePod(name, pod, deleted)
				}
			},
			func(synced bool, err error) {
				if l.core.pod.name == name {
					l.core.pod.synced = l.core.pod.synced || synced
					l.core.pod.err = err
				}
			})
	}
	if !l.watchNodes {
		return
	}
	if name := l.core.wantNode(); name != "" && (l.nodeCancel == nil || l.core.node.name != name) {
		if l.nodeCancel != nil {
			l.nodeCancel()
		}
		l.core.watchNode(name)
		l.nodeCancel = l.watchOne(&corev1.Node{}, name,
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return l.client.CoreV1().Nodes().List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return l.client.CoreV1().Nodes().Watch(ctx, o)
			},
			func(obj any, deleted bool) {
				if node, ok := obj.(*corev1.Node); ok {
					l.core.observeNode(name, node, deleted)
				}
			},
			func(synced bool, _ error) {
				if l.core.node.name == name {
					l.core.node.synced = l.core.node.synced || synced
				}
			})
	}
}

// watchOne watches the object named name until the returned cancel is called (or the lock is closed). on
// gets every event (a deleted object's last state), and state every change of the watch's health (synced
// once it has synced, err from a failed list or watch, nil once one is established); both run with Lock.mu
// held, and every call is followed by a broadcast.
func (l *Lock) watchOne(obj runtime.Object, name string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error),
	on func(obj any, deleted bool), state func(synced bool, err error)) context.CancelFunc {
	ctx, cancel := context.WithCancel(l.ctx)
	inf := l.newInformer(obj, name, list, watchFn, func(err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		state(false, err)
		l.notifyLocked()
	})
	l.run(ctx, inf, func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		on(obj, deleted)
		l.followLocked()
		l.notifyLocked()
	}, func() { state(true, nil) })
	return cancel
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
