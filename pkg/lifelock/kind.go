package lifelock

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// This file maps each lock kind onto one canonical form. The algorithm (lock.go) reads and writes a lock as
// a coordination.k8s.io/v1 Lease; a store turns that into API calls on the kind's real object, and turns the
// watched objects back into Leases.

// Kind is the type of object that holds a lock.
type Kind string

const (
	// KindLease holds the lock in a coordination.k8s.io/v1 Lease owned by the holder's Pod (the default).
	// Plain client-go Lease candidates using the same name see a held lock that never expires.
	KindLease Kind = "lease"

	// KindConfigMap holds the lock in an empty ConfigMap owned by the holder's Pod: the format
	// operator-lib's leader.Become writes and reads. lifelock candidates and operator-lib candidates using the
	// same lock name exclude each other, so an operator can move from one to the other with a rolling update.
	KindConfigMap Kind = "configmap"
)

// SettledAnnotation ("true") marks a lock version whose every earlier holder is proven stopped: the Pod
// of each was seen gone after its containers stopped, or it released the lock after its work stopped, or an
// acquisition grace has passed since it lost the lock. An acquisition that found its predecessor proven
// stopped writes it with the acquisition; one that had to wait out the grace writes it once the grace has
// passed (the only write a lock makes after acquiring). A successor skips the grace only on a settled lock:
// without the mark, a candidate that took the lock from a running holder and then gave it up, or whose
// Pod went away, would hand its successor a proof it never had. Both kinds carry it.
const SettledAnnotation = "lifelock.dev/settled"

// StopsWithinAnnotation is a holder's own statement of how soon it stops acting once its loss is visible to
// it, written with its acquisition: "<duration> <holder identity>", such as "350ms pod-a_5f0c...". A
// candidate writes it when its program stops all leader work as soon as Lock.Lost is closed
// (Options.StopsOnLost; Become and package manageropts set it): TimingsFor's FenceBound. A successor that
// finds such a holder not proven stopped, on a settled version (no earlier holder may still run), waits this
// long after its write instead of the full acquisition grace. It names the holder, so that a writer that
// keeps annotations it does not know (an older lifelock, client-go's Lease lock) never hands one holder's
// statement on to the next: a statement that names another holder, or none, counts as absent. Both kinds
// carry it.
const StopsWithinAnnotation = "lifelock.dev/stops-within"

// Annotations a ConfigMap lock carries beyond operator-lib's format (besides SettledAnnotation). A lock
// lifelock creates has neither; operator-lib ignores both.
const (
	// TransitionsAnnotation is a ConfigMap lock's term number (a Lease keeps it in spec.leaseTransitions).
	// It is written on a takeover; a ConfigMap without it is in term 0.
	TransitionsAnnotation = "lifelock.dev/lease-transitions"

	// ReleasedAnnotation marks a ConfigMap lock released by its holder on shutdown, just before the holder
	// deletes it. Its value is the released holder's identity.
	ReleasedAnnotation = "lifelock.dev/released"
)

// store reads and writes one kind of lock object, in the canonical Lease form.
type store interface {
	resource() schema.GroupResource
	object() runtime.Object // an empty object of the kind, for the informer
	list(ctx context.Context, o metav1.ListOptions) (runtime.Object, error)
	watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error)
	// canonical turns a watched object into the Lease form (false if obj is not of the kind).
	canonical(obj any) (*coordinationv1.Lease, bool)
	create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// get reads the lock live (nil when it does not exist), with a list narrowed to its name: the Role
	// grants list, not get.
	get(ctx context.Context, name string) (*coordinationv1.Lease, error)
	// takeOver writes l, the next term of old, on the condition that old is still current.
	takeOver(ctx context.Context, old, l *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// settle sets SettledAnnotation on cur, on the condition that it is still current.
	settle(ctx context.Context, cur *coordinationv1.Lease) (*coordinationv1.Lease, error)
	// release frees cur, on the condition that it is still current; settled as releasedLease says.
	release(ctx context.Context, cur *coordinationv1.Lease, identity string, settled bool) error
	// reference is the lock object, for Events.
	reference(l *coordinationv1.Lease) runtime.Object
	permissions() []permission
	// roleFile is the shipped Role that grants the permissions.
	roleFile() string
}

func newStore(kind Kind, client kubernetes.Interface, namespace string) store {
	if kind == KindConfigMap {
		return configMapStore{client: client, namespace: namespace}
	}
	return leaseStore{client: client, namespace: namespace}
}

// leaseStore keeps the lock in a Lease: the canonical form is the object itself.
type leaseStore struct {
	client    kubernetes.Interface
	namespace string
}

func (s leaseStore) resource() schema.GroupResource { return coordinationv1.Resource("leases") }
func (s leaseStore) object() runtime.Object         { return &coordinationv1.Lease{} }

func (s leaseStore) list(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return s.client.CoordinationV1().Leases(s.namespace).List(ctx, o)
}

func (s leaseStore) watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return s.client.CoordinationV1().Leases(s.namespace).Watch(ctx, o)
}

func (s leaseStore) canonical(obj any) (*coordinationv1.Lease, bool) {
	l, ok := obj.(*coordinationv1.Lease)
	return l, ok
}

func (s leaseStore) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.client.CoordinationV1().Leases(s.namespace).Create(ctx, l, metav1.CreateOptions{})
}

func (s leaseStore) get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	list, err := s.client.CoordinationV1().Leases(s.namespace).List(ctx, byName(name))
	if err != nil || len(list.Items) == 0 {
		return nil, err
	}
	return &list.Items[0], nil
}

// byName lists the one object named name.
func byName(name string) metav1.ListOptions {
	return metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
}

// takeOver is an Update: it carries old's resourceVersion, so it fails if the lock changed since.
func (s leaseStore) takeOver(ctx context.Context, _, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.client.CoordinationV1().Leases(s.namespace).Update(ctx, l, metav1.UpdateOptions{})
}

// settle is an Update carrying cur's resourceVersion.
func (s leaseStore) settle(ctx context.Context, cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.client.CoordinationV1().Leases(s.namespace).Update(ctx, settledLease(cur), metav1.UpdateOptions{})
}

// release marks the Lease free and keeps it: a deleted lock whose holder's Pod lives looks, to a follower,
// exactly like a lock that vanished under a live leader.
func (s leaseStore) release(ctx context.Context, cur *coordinationv1.Lease, _ string, settled bool) error {
	_, err := s.client.CoordinationV1().Leases(s.namespace).Update(ctx, releasedLease(cur, time.Now(), settled), metav1.UpdateOptions{})
	return err
}

func (s leaseStore) reference(l *coordinationv1.Lease) runtime.Object {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name, UID: l.UID}}
}

func (s leaseStore) roleFile() string { return "config/rbac/lifelock_leader_election_role.yaml" }

func (s leaseStore) permissions() []permission {
	return []permission{
		{verb: "list", group: "coordination.k8s.io", resource: "leases", named: true},
		{verb: "watch", group: "coordination.k8s.io", resource: "leases", named: true},
		{verb: "create", group: "coordination.k8s.io", resource: "leases"}, // a create carries no name to authorize
		{verb: "update", group: "coordination.k8s.io", resource: "leases", named: true},
	}
}

// configMapStore keeps the lock in a ConfigMap, in operator-lib's format: no data, and exactly one
// ownerReference, to the holder's Pod. operator-lib acquires only by creating the ConfigMap and waits while
// it is owned by a Pod that exists, so a lifelock holder must always leave exactly one Pod owner on it:
// takeovers replace the owner (a merge patch, so labels and data are kept), and release marks the lock
// released, then deletes it, rather than stripping the owner (operator-lib would wait forever on a
// ConfigMap with no owner).
type configMapStore struct {
	client    kubernetes.Interface
	namespace string
}

func (s configMapStore) resource() schema.GroupResource { return corev1.Resource("configmaps") }
func (s configMapStore) object() runtime.Object         { return &corev1.ConfigMap{} }

func (s configMapStore) list(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return s.client.CoreV1().ConfigMaps(s.namespace).List(ctx, o)
}

func (s configMapStore) watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return s.client.CoreV1().ConfigMaps(s.namespace).Watch(ctx, o)
}

// canonical reads a ConfigMap lock as a Lease: a Pod owner is the holder, with a lease that never expires;
// a released one has no holder; one with no Pod owner (not a lock operator-lib or lifelock would write) is
// held by nobody that can be proven gone, so it never expires either.
func (s configMapStore) canonical(obj any) (*coordinationv1.Lease, bool) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return nil, false
	}
	l := &coordinationv1.Lease{ObjectMeta: *cm.ObjectMeta.DeepCopy()}
	created := metav1.NewMicroTime(cm.CreationTimestamp.Time)
	var transitions int32
	if v, err := strconv.ParseInt(cm.Annotations[TransitionsAnnotation], 10, 32); err == nil {
		transitions = int32(v)
	}
	l.Spec = coordinationv1.LeaseSpec{
		LeaseDurationSeconds: ptr.To[int32](MaxLeaseDurationSeconds),
		AcquireTime:          &created,
		RenewTime:            &created,
		LeaseTransitions:     ptr.To(transitions),
	}
	owner, hasOwner := podOwner(l)
	_, released := cm.Annotations[ReleasedAnnotation]
	switch {
	case released:
		l.OwnerReferences = withoutPodOwners(l.OwnerReferences)
		l.Spec.HolderIdentity = ptr.To("")
		l.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	case hasOwner:
		l.Spec.HolderIdentity = ptr.To(identityFor(owner))
	default:
		l.Spec.HolderIdentity = ptr.To("(ConfigMap " + cm.Name + " has no Pod owner)")
	}
	return l, true
}

func (s configMapStore) get(ctx context.Context, name string) (*coordinationv1.Lease, error) {
	list, err := s.client.CoreV1().ConfigMaps(s.namespace).List(ctx, byName(name))
	if err != nil || len(list.Items) == 0 {
		return nil, err
	}
	c, _ := s.canonical(&list.Items[0])
	return c, nil
}

// create writes what operator-lib's Become writes, an empty ConfigMap with one Pod owner, plus
// SettledAnnotation when the acquisition is settled and the holder's StopsWithinAnnotation (operator-lib
// ignores annotations).
func (s configMapStore) create(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name, OwnerReferences: l.OwnerReferences, Labels: l.Labels}}
	if n := ptr.Deref(l.Spec.LeaseTransitions, 0); n > 0 {
		cm.Annotations = map[string]string{TransitionsAnnotation: strconv.Itoa(int(n))}
	}
	if settledOf(l) {
		cm.Annotations = withSettled(cm.Annotations, true)
	}
	if v := l.Annotations[StopsWithinAnnotation]; v != "" {
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		cm.Annotations[StopsWithinAnnotation] = v
	}
	created, err := s.client.CoreV1().ConfigMaps(s.namespace).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	c, _ := s.canonical(created)
	return c, nil
}

// takeOver replaces the owner with a merge patch that carries old's resourceVersion, so it fails if the
// lock changed since; the ConfigMap's labels, other annotations and data are kept.
func (s configMapStore) takeOver(ctx context.Context, old, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.patch(ctx, old, map[string]any{
		"ownerReferences": l.OwnerReferences,
		"annotations": map[string]any{
			TransitionsAnnotation: strconv.Itoa(int(ptr.Deref(l.Spec.LeaseTransitions, 0))),
			ReleasedAnnotation:    nil,
			SettledAnnotation:     settledValue(settledOf(l)),
			StopsWithinAnnotation: stringOrNull(l.Annotations[StopsWithinAnnotation]),
		},
	})
}

// settle sets SettledAnnotation with a merge patch that carries cur's resourceVersion.
func (s configMapStore) settle(ctx context.Context, cur *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	return s.patch(ctx, cur, map[string]any{"annotations": map[string]any{SettledAnnotation: "true"}})
}

// settledValue is SettledAnnotation's value in a merge patch: "true", or null to remove it.
func settledValue(settled bool) any {
	if settled {
		return "true"
	}
	return nil
}

// stringOrNull is an annotation's value in a merge patch: s, or null to remove it when empty.
func stringOrNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// release marks the lock released (lifelock followers may take it over from then on, and see it as free
// once it is gone) and then deletes it, so that operator-lib candidates can create it. Both writes are
// conditional: if a follower took the marked lock over first, the delete fails and the lock is left to it.
func (s configMapStore) release(ctx context.Context, cur *coordinationv1.Lease, identity string, settled bool) error {
	marked, err := s.patch(ctx, cur, map[string]any{"annotations": map[string]any{ReleasedAnnotation: identity, SettledAnnotation: settledValue(settled), StopsWithinAnnotation: nil}})
	if err != nil {
		return err
	}
	err = s.client.CoreV1().ConfigMaps(s.namespace).Delete(ctx, cur.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &marked.UID, ResourceVersion: &marked.ResourceVersion},
	})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // taken over (or deleted) by someone else after the mark: it is no longer ours to delete
	}
	return err
}

// patch applies a JSON merge patch of metadata to the ConfigMap old, on the condition that old's
// resourceVersion is still current.
func (s configMapStore) patch(ctx context.Context, old *coordinationv1.Lease, meta map[string]any) (*coordinationv1.Lease, error) {
	meta["resourceVersion"] = old.ResourceVersion
	body, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, fmt.Errorf("encoding a patch of ConfigMap %s: %w", old.Name, err)
	}
	patched, err := s.client.CoreV1().ConfigMaps(s.namespace).Patch(ctx, old.Name, types.MergePatchType, body, metav1.PatchOptions{})
	if err != nil {
		return nil, err
	}
	c, _ := s.canonical(patched)
	return c, nil
}

func (s configMapStore) reference(l *coordinationv1.Lease) runtime.Object {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name, UID: l.UID}}
}

func (s configMapStore) roleFile() string {
	return "config/rbac/lifelock_leader_election_role_configmap.yaml"
}

func (s configMapStore) permissions() []permission {
	return []permission{
		{verb: "list", resource: "configmaps", named: true},
		{verb: "watch", resource: "configmaps", named: true},
		{verb: "create", resource: "configmaps"},
		{verb: "patch", resource: "configmaps", named: true},
		{verb: "delete", resource: "configmaps", named: true},
	}
}
