package fencing_test

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/lifelock/lifelock/pkg/fencing"
	"github.com/lifelock/lifelock/pkg/lifelock"
)

// A reconciler's client stamps every write with the leader's term, and sends nothing once the leader has
// lost its lock. In a manager, the Fencer is the manager's lock (lock, _ := manageropts.LockOf(mgr)) and
// the client mgr.GetClient(); here a fake client and a Fencer that the example moves from leading to lost.
func Example() {
	ctx := context.Background()
	lock := &exampleLock{term: lifelock.Term{Number: 1, LockUID: "6a0b4c1e-0000-4000-8000-000000000001", Revision: "48211"}}
	c := fencing.NewClient(fake.NewClientBuilder().Build(), lock)

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "state", Namespace: "ops"}}
	if err := c.Create(ctx, cm); err != nil {
		fmt.Println(err)
	}
	fmt.Println("stamp:", cm.Annotations[fencing.Annotation])

	lock.lost = true
	err := c.Update(ctx, cm)
	fmt.Println("after the loss:", errors.Is(err, lifelock.ErrLockLost))

	// The policy that makes the API server refuse the same writes, whoever sends them as the operator.
	policy, binding, _ := fencing.Policy(fencing.PolicyOptions{
		LockName: "my-operator-lock", LockNamespace: "ops",
		User:      fencing.ServiceAccountUser("ops", "my-operator"),
		Resources: []schema.GroupResource{{Resource: "configmaps"}},
	})
	fmt.Println(policy.Name, binding.Spec.ParamRef.Name)
	// Output:
	// stamp: 1/6a0b4c1e-0000-4000-8000-000000000001/48211
	// after the loss: true
	// lifelock-fencing.ops.my-operator-lock my-operator-lock
}

type exampleLock struct {
	term lifelock.Term
	lost bool
}

func (l *exampleLock) Fence() (lifelock.Term, error) {
	if l.lost {
		return l.term, lifelock.ErrLockLost
	}
	return l.term, nil
}
