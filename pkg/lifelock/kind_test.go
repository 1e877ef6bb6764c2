package lifelock

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestConfigMapCanonical(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	podA := metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "a", UID: "uid-a"}
	deployment := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "d", UID: "uid-d"}
	cm := func(annotations map[string]string, owners ...metav1.OwnerReference) *corev1.ConfigMap {
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "ns", Name: "lock", UID: "uid-lock", ResourceVersion: "42",
				CreationTimestamp: created, Annotations: annotations, OwnerReferences: owners,
				Labels: map[string]string{"keep": "me"},
			},
			Data: map[string]string{"k": "v"},
		}
	}
	for _, tc := range []struct {
		name        string
		cm          *corev1.ConfigMap
		holder      string // "" for no holder; "*" for a non-empty holder that is no Pod identity
		duration    int32
		transitions int32
		owners      []metav1.OwnerReference
	}{
		{
			name: "owned by a Pod (operator-lib's format): held by that Pod, never expires",
			cm:   cm(nil, podA), holder: "a_uid-a", duration: MaxLeaseDurationSeconds, owners: []metav1.OwnerReference{podA},
		},
		{
			name: "a Pod owner among other owners",
			cm:   cm(nil, deployment, podA), holder: "a_uid-a", duration: MaxLeaseDurationSeconds, owners: []metav1.OwnerReference{deployment, podA},
		},
		{
			name: "taken over: the transitions annotation is the term number",
			cm:   cm(map[string]string{TransitionsAnnotation: "7"}, podA), holder: "a_uid-a", duration: MaxLeaseDurationSeconds, transitions: 7,
			owners: []metav1.OwnerReference{podA},
		},
		{
			name: "a malformed transitions annotation counts as term 0",
			cm:   cm(map[string]string{TransitionsAnnotation: "seven"}, podA), holder: "a_uid-a", duration: MaxLeaseDurationSeconds,
			owners: []metav1.OwnerReference{podA},
		},
		{
			name:   "released: no holder, Pod owners stripped, a one-second lease, term kept",
			cm:     cm(map[string]string{ReleasedAnnotation: "a_uid-a", TransitionsAnnotation: "3"}, deployment, podA),
			holder: "", duration: 1, transitions: 3, owners: []metav1.OwnerReference{deployment},
		},
		{
			name: "no Pod owner (made by hand): held by nobody who can be proven gone, never expires",
			cm:   cm(nil, deployment), holder: "*", duration: MaxLeaseDurationSeconds, owners: []metav1.OwnerReference{deployment},
		},
		{
			name: "no owner at all",
			cm:   cm(nil), holder: "*", duration: MaxLeaseDurationSeconds,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.cm.DeepCopy()
			l, ok := configMapStore{}.canonical(tc.cm)
			if !ok {
				t.Fatal("canonical did not accept a ConfigMap")
			}
			switch h := holderOf(l); {
			case tc.holder == "*":
				if h == "" || strings.Contains(h, "_uid-") {
					t.Errorf("holder = %q, want a non-empty holder that names no Pod", h)
				}
			case h != tc.holder:
				t.Errorf("holder = %q, want %q", h, tc.holder)
			}
			if got := ptr.Deref(l.Spec.LeaseDurationSeconds, 0); got != tc.duration {
				t.Errorf("leaseDurationSeconds = %d, want %d", got, tc.duration)
			}
			if got := ptr.Deref(l.Spec.LeaseTransitions, -1); got != tc.transitions {
				t.Errorf("leaseTransitions = %d, want %d", got, tc.transitions)
			}
			if len(l.OwnerReferences) != len(tc.owners) {
				t.Fatalf("ownerReferences = %+v, want %+v", l.OwnerReferences, tc.owners)
			}
			for i := range tc.owners {
				if l.OwnerReferences[i] != tc.owners[i] {
					t.Errorf("ownerReferences[%d] = %+v, want %+v", i, l.OwnerReferences[i], tc.owners[i])
				}
			}
			if l.Name != "lock" || l.Namespace != "ns" || l.UID != "uid-lock" || l.ResourceVersion != "42" || l.Labels["keep"] != "me" {
				t.Errorf("metadata not carried over: %+v", l.ObjectMeta)
			}
			if l.Spec.AcquireTime == nil || !l.Spec.AcquireTime.Time.Equal(created.Time) {
				t.Errorf("acquireTime = %v, want the creation time %v", l.Spec.AcquireTime, created)
			}
			// Read as the elector would, a held lock never expires and a released one is free.
			rec := recordOf(l)
			if tc.holder == "" && (rec.HolderIdentity != "" || rec.LeaseDurationSeconds != 1) {
				t.Errorf("recordOf(released) = %+v", rec)
			}
			if tc.holder != "" && rec.LeaseDurationSeconds != MaxLeaseDurationSeconds {
				t.Errorf("recordOf(held) = %+v, want a lease that never expires", rec)
			}
			if !apiequality.Semantic.DeepEqual(tc.cm, orig) {
				t.Errorf("canonical changed the watched ConfigMap (an informer's cached object):\n got %+v\nwant %+v", tc.cm, orig)
			}
		})
	}

	if _, ok := (configMapStore{}).canonical(&coordinationv1.Lease{}); ok {
		t.Error("canonical accepted a Lease")
	}
}

// A Lease store reads the Lease itself.
func TestLeaseCanonical(t *testing.T) {
	l := newLock("ns", "lock", PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}, time.Now(), false, 0)
	got, ok := leaseStore{}.canonical(l)
	if !ok || got != l {
		t.Errorf("leaseStore.canonical = %v, %v; want the Lease itself", got, ok)
	}
	if _, ok := (leaseStore{}).canonical(&corev1.ConfigMap{}); ok {
		t.Error("leaseStore.canonical accepted a ConfigMap")
	}
}
