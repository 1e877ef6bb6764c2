package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
)

// newLeaseWithoutLabels is a plain Lease with no labels, to probe an admission policy.
func newLeaseWithoutLabels(name string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// A cluster whose admission policy requires labels on Leases denies every lock created without them:
// manager.Options.LeaderElectionLabels must reach the lock in life mode, as it does in lease mode.
var _ = Describe("Lock labels", func() {
	It("puts LeaderElectionLabels on the lock, so a policy that requires them admits it", func(ctx SpecContext) {
		ns, hist := newCheckedScenario(ctx)
		name := "require-team-label-" + ns
		policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{"coordination.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"leases"}},
					},
				}}},
				Validations: []admissionregistrationv1.Validation{{
					Expression: "has(object.metadata.labels) && 'team' in object.metadata.labels",
					Message:    "leases need a team label",
				}},
			},
		}
		_, err := cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		})
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
				MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns},
				}},
			},
		}
		_, err = cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
		})
		// The policy is in force once a Lease without the label is denied (policies load asynchronously).
		Eventually(func() error {
			_, err := cp.Client.CoordinationV1().Leases(ns).Create(ctx, newLeaseWithoutLabels("probe"), metav1.CreateOptions{})
			if err == nil {
				_ = cp.Client.CoordinationV1().Leases(ns).Delete(ctx, "probe", metav1.DeleteOptions{})
			}
			return err
		}).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("leases need a team label")))

		newPod(ctx, ns, "a")
		o := &manageropts.Options{Lock: lifelock.Options{PodName: "a", PodNamespace: ns}}
		mgr, err := o.NewManager(cp.Config, manager.Options{
			LeaderElection: true, LeaderElectionID: lockName, LeaderElectionNamespace: ns,
			LeaderElectionLabels: map[string]string{"team": "infra"},
			Metrics:              metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(mgr.Add(harness.Actor("a", hist))).To(Succeed())
		mctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		DeferCleanup(func() {
			stop()
			Eventually(done).WithTimeout(10 * time.Second).Should(Receive())
		})
		Eventually(mgr.Elected()).WithTimeout(10*time.Second).Should(BeClosed(), "the lock was created without the labels and denied")
		l, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(l.Labels).To(HaveKeyWithValue("team", "infra"))
	})
})
