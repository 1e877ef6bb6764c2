package scaffold

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

const node = "scaffold-node"

// scenario is one namespace with the scaffold's RBAC granted to one user, and the replicas of the
// scaffold's manager that run as that user.
type scenario struct {
	ns         string
	kubeconfig string
	witness    string // directory of the replicas' witness records
	replicas   []*replica
}

// replica is one manager process and the Pod it plays.
type replica struct {
	name  string
	pod   *corev1.Pod
	proc  *harness.Process
	probe string // the health probe address, 127.0.0.1:port
}

// newScenario creates a namespace, grants a new user what the scaffold's config/rbac gives the manager (its
// leader-election Role, with or without the pods rule the adoption diff adds, and the manager ClusterRole)
// and returns the scenario. Its cleanup kills what still runs and, if the spec failed, prints each
// replica's output.
func newScenario(ctx context.Context, withPodsRule bool) *scenario {
	ns, err := cp.CreateNamespace(ctx, "guestbook")
	Expect(err).NotTo(HaveOccurred())
	user := "guestbook-manager-" + ns
	grantScaffoldRBAC(ctx, ns, user, withPodsRule)
	kubeconfig, err := cp.AddUserKubeconfig(user)
	Expect(err).NotTo(HaveOccurred())
	return scenarioIn(ctx, ns, kubeconfig)
}

// scenarioIn returns a scenario whose replicas run in namespace ns with the identity of kubeconfig. Its
// cleanup kills what still runs and, if the spec failed, prints each replica's output.
func scenarioIn(ctx context.Context, ns, kubeconfig string) *scenario {
	Expect(cp.EnsureNode(ctx, node)).To(Succeed())
	s := &scenario{ns: ns, kubeconfig: kubeconfig, witness: GinkgoT().TempDir()}
	DeferCleanup(func() {
		for _, r := range s.replicas {
			r.proc.Kill()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("--- output of %s (exit %d) ---\n%s\n", r.name, r.proc.ExitCode(), r.proc.Output())
			}
		}
	})
	return s
}

// grantScaffoldRBAC creates the scaffold's leader-election Role in ns and its manager ClusterRole, bound to
// user. Without withPodsRule, the Role is the stock one: the rule the adoption diff adds is left out.
func grantScaffoldRBAC(ctx context.Context, ns, user string, withPodsRule bool) {
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	var role rbacv1.Role
	readManifest(filepath.Join(proj.dir, "config", "rbac", "leader_election_role.yaml"), &role)
	if !withPodsRule {
		var stock []rbacv1.PolicyRule
		for _, r := range role.Rules {
			if len(r.Resources) != 1 || r.Resources[0] != "pods" {
				stock = append(stock, r)
			}
		}
		Expect(stock).To(HaveLen(len(role.Rules)-1), "the adoption diff's pods rule is not in leader_election_role.yaml")
		role.Rules = stock
	}
	role.Namespace = ns
	_, err := cp.Client.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cp.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "leader-election-rolebinding"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   subjects,
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	var manager rbacv1.ClusterRole
	readManifest(filepath.Join(proj.dir, "config", "rbac", "role.yaml"), &manager)
	manager.Name = "guestbook-manager-" + ns
	_, err = cp.Client.RbacV1().ClusterRoles().Create(ctx, &manager, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cp.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: manager.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: manager.Name},
		Subjects:   subjects,
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		_ = cp.Client.RbacV1().ClusterRoleBindings().Delete(ctx, manager.Name, metav1.DeleteOptions{})
		_ = cp.Client.RbacV1().ClusterRoles().Delete(ctx, manager.Name, metav1.DeleteOptions{})
	})
}

func readManifest(path string, into any) {
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.UnmarshalStrict(b, into)).To(Succeed(), path)
}

// env is the replicas' environment: the user's kubeconfig and the witness directory. The harness removes
// POD_NAME and POD_NAMESPACE, as the scaffold's manager.yaml sets none.
func (s *scenario) env() []string {
	return append(os.Environ(), "KUBECONFIG="+s.kubeconfig, witness.DirEnv+"="+s.witness)
}

// startPod creates the Pod name and runs manager in it, in the kubelet's order (the IP is published after
// the process started), with the scaffold's manager.yaml arguments
// (--leader-elect, and a health probe address, here one free port per replica) followed by extra.
func (s *scenario) startPod(ctx context.Context, name, manager string, extra ...string) *replica {
	pod, err := cp.CreatePendingPod(ctx, s.ns, name, node)
	Expect(err).NotTo(HaveOccurred())
	r := &replica{name: name, probe: freeAddress()}
	args := append([]string{"--leader-elect", "--health-probe-bind-address=" + r.probe}, extra...)
	r.proc, err = cp.StartContainer(ctx, pod, s.env(), manager, args...)
	Expect(err).NotTo(HaveOccurred())
	r.pod = r.proc.Pod
	s.replicas = append(s.replicas, r)
	return r
}

// startLocal runs manager with args as a plain local process, as `make run` does on a laptop. The replica
// is named after the machine's hostname, as its witness records are.
func (s *scenario) startLocal(manager string, args ...string) *replica {
	host, err := os.Hostname()
	Expect(err).NotTo(HaveOccurred())
	r := &replica{name: host, probe: freeAddress()}
	r.proc, err = harness.StartProcess(s.env(), manager, append([]string{"--health-probe-bind-address=" + r.probe}, args...)...)
	Expect(err).NotTo(HaveOccurred())
	s.replicas = append(s.replicas, r)
	return r
}

// history reads the replicas' witness records.
func (s *scenario) history() *harness.History {
	h, err := harness.ReadWitness(s.witness)
	Expect(err).NotTo(HaveOccurred())
	return h
}

// acting names the replicas whose controllers may act now.
func (s *scenario) acting() []string { return s.history().Acting() }

// electedOf waits until exactly one replica acts and it is a or b, and returns it and the other one.
func (s *scenario) electedOf(timeout time.Duration, a, b *replica) (leader, other *replica) {
	Eventually(s.acting).WithTimeout(timeout).Should(Or(ConsistOf(a.name), ConsistOf(b.name)))
	if s.acting()[0] == a.name {
		return a, b
	}
	return b, a
}

// startOf returns when who started acting, on the witness clock.
func (s *scenario) startOf(who string) time.Duration { return s.spansOf(who)[0].Start }

// endOf returns when who last stopped acting, on the witness clock.
func (s *scenario) endOf(who string) time.Duration {
	spans := s.spansOf(who)
	return spans[len(spans)-1].End
}

func (s *scenario) spansOf(who string) []harness.Span {
	spans := s.history().Find(func(span harness.Span) bool { return span.Who == who })
	Expect(spans).NotTo(BeEmpty(), who+" never acted")
	return spans
}

// lease reads the lock, the Lease named after the scaffold's LeaderElectionID.
func (s *scenario) lease(ctx context.Context) (*coordinationv1.Lease, error) {
	return cp.Client.CoordinationV1().Leases(s.ns).Get(ctx, proj.electionID, metav1.GetOptions{})
}

// expectHolder asserts that the lock is a life-mode lock held by r's Pod: owned by it, naming it.
func (s *scenario) expectHolder(ctx context.Context, r *replica) {
	lease, err := s.lease(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(lease.OwnerReferences).To(HaveLen(1))
	Expect(lease.OwnerReferences[0].UID).To(Equal(r.pod.UID))
	Expect(lease.Spec.HolderIdentity).To(HaveValue(Equal(r.pod.Name + "_" + string(r.pod.UID))))
}

// stop ends a replica as a rolling update does: SIGTERM, the process exits 0 within the grace period, and
// kubelet and the API server delete its Pod.
func (s *scenario) stop(ctx context.Context, r *replica) {
	Expect(r.proc.Stop(terminateGrace)).To(Succeed(), r.proc.Output())
	Expect(cp.DeletePodGracefully(ctx, r.pod)).To(Succeed())
}

// ready reports whether the replica's readiness probe passes.
func (r *replica) ready() error {
	resp, err := http.Get("http://" + r.probe + "/readyz")
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: /readyz answered %s", r.name, resp.Status)
	}
	return nil
}

// freeAddress returns a loopback address with a port free right now.
func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
