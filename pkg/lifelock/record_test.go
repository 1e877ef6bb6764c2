package lifelock

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func TestJudgePod(t *testing.T) {
	pod := func(uid string, phase corev1.PodPhase, terminating bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: types.UID(uid)}, Status: corev1.PodStatus{Phase: phase}}
		if terminating {
			p.DeletionTimestamp = ptr.To(metav1.Now())
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want podVerdict
	}{
		{"missing", nil, podMissing},
		{"same name, other UID", pod("other", corev1.PodRunning, false), podReplaced},
		{"running", pod("u", corev1.PodRunning, false), podAlive},
		{"pending", pod("u", corev1.PodPending, false), podAlive},
		{"terminating is still alive", pod("u", corev1.PodRunning, true), podAlive},
		{"failed (evicted)", pod("u", corev1.PodFailed, false), podTerminal},
		{"succeeded", pod("u", corev1.PodSucceeded, false), podTerminal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := judgePod(tc.pod, "u"); got != tc.want {
				t.Errorf("judgePod = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProvenStopped(t *testing.T) {
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	terminated := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}
	waiting := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}}
	pod := func(deleting bool, init []corev1.ContainerStatus, cs ...corev1.ContainerStatus) *corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: init, ContainerStatuses: cs}}
		if deleting {
			p.DeletionTimestamp = ptr.To(metav1.Now())
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"nil", nil, false},
		{"deleting, all terminated", pod(true, nil, terminated, terminated), true},
		{"deleting, init and main terminated", pod(true, []corev1.ContainerStatus{terminated}, terminated), true},
		{"deleting, one running", pod(true, nil, terminated, running), false},
		{"deleting, a sidecar running", pod(true, []corev1.ContainerStatus{running}, terminated), false},
		{"deleting, one waiting", pod(true, nil, waiting), false},
		{"deleting, no statuses", pod(true, nil), false},
		{"terminated but not deleting (statuses alone are no proof)", pod(false, nil, terminated), false},
		{"evicted by the kubelet: Failed, all terminated", withPhase(pod(false, nil, terminated), corev1.PodFailed), true},
		{"finished: Succeeded, all terminated", withPhase(pod(false, nil, terminated, terminated), corev1.PodSucceeded), true},
		{"Failed by Pod GC or a third party: a container still running", withPhase(pod(false, nil, running), corev1.PodFailed), false},
		{"Failed with no container statuses (a rejected Pod)", withPhase(pod(false, nil), corev1.PodFailed), false},
		{"Failed, a sidecar running", withPhase(pod(false, []corev1.ContainerStatus{running}, terminated), corev1.PodFailed), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := provenStopped(tc.pod); got != tc.want {
				t.Errorf("provenStopped = %v, want %v", got, tc.want)
			}
		})
	}
}

func withPhase(p *corev1.Pod, phase corev1.PodPhase) *corev1.Pod {
	p.Status.Phase = phase
	return p
}

func TestLockFormat(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	a := PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}
	b := PodRef{Namespace: "ns", Name: "b", UID: "uid-b"}

	l := newLock("ns", "lock", a, now, false, 0)
	if got, ok := podOwner(l); !ok || got != a {
		t.Fatalf("podOwner(newLock) = %v, %v; want %v", got, ok, a)
	}
	if holderOf(l) != "a_uid-a" || *l.Spec.LeaseDurationSeconds != MaxLeaseDurationSeconds || *l.Spec.LeaseTransitions != 0 {
		t.Fatalf("newLock spec = %+v", l.Spec)
	}
	if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Controller != nil || l.OwnerReferences[0].BlockOwnerDeletion != nil {
		t.Fatalf("newLock owner references = %+v; want exactly the Pod, no controller, no blockOwnerDeletion", l.OwnerReferences)
	}

	l.Labels = map[string]string{"keep": "me"}
	l.OwnerReferences = append(l.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "d", UID: "d"})
	taken := takenOver(l, b, now.Add(time.Minute), false, 0)
	if got, _ := podOwner(taken); got != b {
		t.Errorf("takenOver owner = %v, want %v", got, b)
	}
	if len(taken.OwnerReferences) != 2 || taken.Labels["keep"] != "me" {
		t.Errorf("takenOver dropped something: refs %v, labels %v", taken.OwnerReferences, taken.Labels)
	}
	if *taken.Spec.LeaseTransitions != 1 || holderOf(taken) != "b_uid-b" {
		t.Errorf("takenOver spec = %+v", taken.Spec)
	}

	rel := releasedLease(taken, now, true)
	if _, ok := podOwner(rel); ok || holderOf(rel) != "" || *rel.Spec.LeaseDurationSeconds != 1 || *rel.Spec.LeaseTransitions != 1 {
		t.Errorf("releasedLease = %+v %+v", rel.OwnerReferences, rel.Spec)
	}
	if rec := recordOf(rel); rec.HolderIdentity != "" || rec.LeaderTransitions != 1 {
		t.Errorf("recordOf(released) = %+v", rec)
	}
}

func TestRecordOfPlainLease(t *testing.T) {
	renew := metav1.NewMicroTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
		HolderIdentity: ptr.To("host_123"), LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &renew, LeaseTransitions: ptr.To[int32](4),
	}}
	r := recordOf(l)
	if r.HolderIdentity != "host_123" || r.LeaseDurationSeconds != 15 || r.LeaderTransitions != 4 || !r.RenewTime.Time.Equal(renew.Time) {
		t.Errorf("recordOf = %+v", r)
	}
	if h := heldRecord("x", r); h.LeaseDurationSeconds != MaxLeaseDurationSeconds || h.HolderIdentity != "x" {
		t.Errorf("heldRecord = %+v", h)
	}
	if string(rawRecord(r)) == string(rawRecord(heldRecord("x", r))) {
		t.Error("rawRecord does not tell records apart")
	}
}

// Options.Labels go on a lock a candidate creates (admission policies may require them).
func TestLockLabels(t *testing.T) {
	l := withLabels(newLock("ns", "lock", PodRef{Namespace: "ns", Name: "a", UID: "uid-a"}, time.Now(), false, 0), map[string]string{"team": "infra"})
	if l.Labels["team"] != "infra" || len(l.Labels) != 1 {
		t.Fatalf("labels = %v", l.Labels)
	}
	if err := (Options{Labels: map[string]string{"bad key!": "v"}}).validate(); err == nil {
		t.Fatal("an invalid label key was accepted")
	}
	if err := (Options{Labels: map[string]string{"team": "not a value!"}}).validate(); err == nil {
		t.Fatal("an invalid label value was accepted")
	}
}
