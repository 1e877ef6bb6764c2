package e2e

import (
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

// shippedLockName is the lock name the shipped Roles grant their named rules on: examples/manager's
// LeaderElectionID.
const shippedLockName = "lifelock-example"

// shippedRole reads a Role users deploy from config/rbac and names the test's lock in it where it names
// shippedLockName, as the patch in config/rbac/kustomization.yaml does for a user's lock.
func shippedRole(file string) *rbacv1.Role {
	b, err := os.ReadFile("../../config/rbac/" + file)
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.Role{}
	Expect(yaml.UnmarshalStrict(b, role)).To(Succeed())
	named := 0
	for i, r := range role.Rules {
		for j, n := range r.ResourceNames {
			Expect(n).To(Equal(shippedLockName), "%s names only the lock", file)
			role.Rules[i].ResourceNames[j] = lockName
			named++
		}
	}
	Expect(named).To(Equal(1), "%s narrows the lock's rules to its name", file)
	return role
}

// AddUser needs the control plane's certificate authority, which only the process that started it holds.
var _ = Describe("RBAC", Serial, func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	// bindUser creates role in ns and binds it to a new user, returning that user's connection.
	bindUser := func(ctx SpecContext, role *rbacv1.Role, user string) {
		role.Namespace = ns
		_, err := cp.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cp.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}

	// leadsAndHandsOver binds role to a new user and runs two candidates as that user: one leads, releases
	// on shutdown (an update of the lock, by name), and the other takes over, with no overlap. It returns
	// the user's connection.
	leadsAndHandsOver := func(ctx SpecContext, role *rbacv1.Role, kind lifelock.Kind, user string) *rest.Config {
		bindUser(ctx, role, user)
		cfg, err := cp.AddUser(user)
		Expect(err).NotTo(HaveOccurred())
		hist := harness.NewHistory()
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Config: cfg, Lock: lifelock.Options{Kind: kind}})
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Config: cfg, Lock: lifelock.Options{Kind: kind}})
		Expect(a.Stop(10 * time.Second)).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		Expect(hist.Check()).To(Succeed())
		return cfg
	}

	It("works for a user bound only to config/rbac's Role, which covers no other lock", func(ctx SpecContext) {
		cfg := leadsAndHandsOver(ctx, shippedRole("role.yaml"), lifelock.KindLease, "candidate-ok")

		// The Role grants the lock's verbs on its name only: another lock is refused at start-up, naming
		// what is missing and the name a rule must list.
		podC := newPod(ctx, ns, "c")
		_, err := cp.NewCandidate(harness.CandidateOptions{LockName: "other-lock", Pod: podC, Config: cfg})
		Expect(err).To(MatchError(lifelock.ErrMissingPermission))
		Expect(err.Error()).To(ContainSubstring(`list leases.coordination.k8s.io "other-lock"`))
		Expect(err.Error()).To(ContainSubstring(`the lock's name "other-lock" in the resourceNames`))
	})

	It("works for a user bound only to config/rbac's ConfigMap Role, which deletes no other ConfigMap", func(ctx SpecContext) {
		cfg := leadsAndHandsOver(ctx, shippedRole("role_configmap.yaml"), lifelock.KindConfigMap, "candidate-cm")
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		err = cs.CoreV1().ConfigMaps(ns).Delete(ctx, "unrelated", metav1.DeleteOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting another ConfigMap: %v", err)
	})

	DescribeTable("names the permission that is missing",
		func(ctx SpecContext, group, resource, verb, want string) {
			role := shippedRole("role.yaml")
			found := false
			for i, r := range role.Rules {
				if r.APIGroups[0] == group && r.Resources[0] == resource {
					var verbs []string
					for _, v := range r.Verbs {
						if v != verb {
							verbs = append(verbs, v)
						} else {
							found = true
						}
					}
					role.Rules[i].Verbs = verbs
				}
			}
			Expect(found).To(BeTrue(), "role.yaml grants %s %s", verb, resource)
			user := "candidate-without-" + verb + "-" + resource
			bindUser(ctx, role, user)
			cfg, err := cp.AddUser(user)
			Expect(err).NotTo(HaveOccurred())
			pod := newPod(ctx, ns, "a")
			_, err = lifelock.New(ctx, cfg, lockName, lifelock.Options{PodName: pod.Name, PodNamespace: ns})
			Expect(err).To(MatchError(lifelock.ErrMissingPermission))
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("watch leases", "coordination.k8s.io", "leases", "watch", "may not watch leases.coordination.k8s.io"),
		Entry("update leases", "coordination.k8s.io", "leases", "update", "may not update leases.coordination.k8s.io"),
		Entry("list pods", "", "pods", "list", "may not list pods"),
		Entry("get pods", "", "pods", "get", "grant verb get on pods"),
	)
})
