package lifelock

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestSuspect(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	pod := func(terminatingFor time.Duration) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "leader", UID: types.UID("u")}, Spec: corev1.PodSpec{NodeName: "n1"}}
		if terminatingFor != 0 {
			// The API server sets deletionTimestamp to the end of the grace period.
			p.DeletionTimestamp = &metav1.Time{Time: now.Add(-terminatingFor)}
		}
		return p
	}
	node := func(name string, status corev1.ConditionStatus, since time.Duration) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: status, LastTransitionTime: metav1.Time{Time: now.Add(-since)}},
		}}}
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		node      *corev1.Node
		wantWhat  string // "" for not suspicious
		wantSince time.Duration
	}{
		{name: "running on a Ready node", pod: pod(0), node: node("n1", corev1.ConditionTrue, time.Hour)},
		{name: "no node known", pod: pod(0)},
		{name: "node NotReady", pod: pod(0), node: node("n1", corev1.ConditionFalse, 3*time.Minute), wantWhat: "its Node n1 has been NotReady", wantSince: 3 * time.Minute},
		{name: "node Unknown", pod: pod(0), node: node("n1", corev1.ConditionUnknown, time.Minute), wantWhat: "has been Unknown", wantSince: time.Minute},
		{name: "another node NotReady", pod: pod(0), node: node("n2", corev1.ConditionFalse, time.Minute)},
		{name: "terminating within its grace period", pod: pod(-10 * time.Second), node: node("n1", corev1.ConditionTrue, time.Hour)},
		{name: "terminating a little past its grace period: the kubelet is finishing", pod: pod(terminatingSlack - time.Second), node: node("n1", corev1.ConditionTrue, time.Hour)},
		{name: "terminating past its grace period", pod: pod(2 * time.Minute), node: node("n1", corev1.ConditionTrue, time.Hour), wantWhat: "terminating past its grace period", wantSince: 2 * time.Minute},
		{name: "another Pod's UID", pod: func() *corev1.Pod { p := pod(time.Minute); p.UID = "v"; return p }()},
		{name: "no Pod", node: node("n1", corev1.ConditionFalse, time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := suspect(tc.pod, "u", tc.node, now)
			if tc.wantWhat == "" {
				if s != nil {
					t.Fatalf("suspect = %+v, want nothing", *s)
				}
				return
			}
			if s == nil || !strings.Contains(s.what, tc.wantWhat) || s.since != tc.wantSince || s.node != "n1" {
				t.Fatalf("suspect = %+v, want %q for %s on n1", s, tc.wantWhat, tc.wantSince)
			}
		})
	}
}

func TestRemediesNameTheSafeWays(t *testing.T) {
	got := remedies("leader-0", "n1")
	for _, want := range []string{"kubectl delete node n1", "kubectl taint nodes n1 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute", "kubectl delete pod leader-0 --grace-period=0 --force", "only if you know its containers have stopped"} {
		if !strings.Contains(got, want) {
			t.Errorf("remedies lack %q:\n%s", want, got)
		}
	}
}

func TestOutOfService(t *testing.T) {
	n := &corev1.Node{}
	if outOfService(n) {
		t.Error("an untainted Node is out of service")
	}
	n.Spec.Taints = []corev1.Taint{{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}}
	if outOfService(n) {
		t.Error("an unreachable Node is out of service")
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: OutOfServiceTaint, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
	if !outOfService(n) {
		t.Error("a Node tainted out-of-service is not")
	}
}
