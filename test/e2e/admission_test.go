package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lifelock/lifelock/pkg/fencing"
	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

// lockPartition cuts a connection off from everything but ConfigMaps while it is on: a leader whose watches
// and live reads of its lock and Pod fail (so it cannot learn that it lost) while its writes still reach
// the API server.
type lockPartition struct {
	mu  sync.Mutex
	cut bool
}

func (p *lockPartition) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			p.mu.Lock()
			cut := p.cut
			p.mu.Unlock()
			if cut && !strings.Contains(r.URL.Path, "/configmaps") {
				return nil, errors.New("cut off from the lock by the test's partition")
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func (p *lockPartition) set(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// write is one write a leader sent, and how it ended.
type write struct {
	sent time.Time
	err  error
}

// AddUser needs the control plane's certificate authority, which only the process that started it holds.
var _ = Describe("Admission fencing", Serial, func() {
	var ns string
	BeforeEach(func(ctx SpecContext) { ns = newNamespace(ctx) })

	It("refuses every write a force-deleted, cut-off leader sends after the takeover; the objects show only its successor's", func(ctx SpecContext) {
		// The operator's identity, with config/rbac's lock Role.
		user, cfg := operatorIdentity(ctx, ns, shippedRole(ns, false))
		bindPolicy(ctx, ns, user, cfg)

		// a leads, as the operator's identity, through a connection the spec can cut off from its lock.
		partition := &lockPartition{}
		breaker := harness.NewWatchBreaker()
		cfgA := breaker.Wrap(partition.wrap(cfg))
		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, Config: cfgA})
		DeferCleanup(func() { partition.set(false); breaker.Heal() }) // before a stops
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		termA, err := a.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())
		rawA, err := client.New(cfgA, client.Options{})
		Expect(err).NotTo(HaveOccurred())
		clientA := fencing.NewClient(rawA, a.Lock)

		objects := []string{"obj-0", "obj-1", "obj-2"}
		for _, name := range objects {
			Expect(clientA.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Data:       map[string]string{"writer": "a"},
			})).To(Succeed(), "the leader's stamped writes pass")
		}

		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, Config: rest.CopyConfig(cfg)})
		Eventually(b.Lock.Holder).WithTimeout(30 * time.Second).Should(Equal(a.Lock.Identity()))

		// a writes without pause, as a reconcile that does not know it lost would.
		var (
			mu     sync.Mutex
			writes []write
		)
		stopA := make(chan struct{})
		aDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(aDone)
			for i := 0; ; i++ {
				select {
				case <-stopA:
					return
				default:
				}
				obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: objects[i%len(objects)], Namespace: ns}}
				patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"data":{"writer":"a","seq":"%d"}}`, i)))
				sent := time.Now()
				err := clientA.Patch(ctx, obj, patch)
				mu.Lock()
				writes = append(writes, write{sent: sent, err: err})
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
		DeferCleanup(func() {
			select {
			case <-stopA:
			default:
				close(stopA)
			}
			<-aDone
		})

		// a is cut off from its lock and its Pod, then force-deleted: it cannot learn that it lost.
		partition.set(true)
		breaker.Break()
		Expect(cp.ForceDeletePod(ctx, podA)).To(Succeed())
		deleted := time.Now()
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		tookOver := time.Now()
		termB, err := b.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())
		// b took the lock over from a's gone Pod, or created it again after the garbage collector deleted it.
		later, err := termA.Before(termB)
		Expect(err).NotTo(HaveOccurred())
		Expect(later).To(BeTrue(), "b's term %s is after a's %s", termB, termA)
		_, stillLeads := a.Lock.Term()
		Expect(stillLeads).To(BeTrue(), "a does not know it lost")
		measure("admission: successor leads after the cut-off leader's force delete", tookOver.Sub(deleted))

		// b writes every object; a goes on writing, at least 50 more writes.
		rawB, err := client.New(rest.CopyConfig(cfg), client.Options{})
		Expect(err).NotTo(HaveOccurred())
		clientB := fencing.NewClient(rawB, b.Lock)
		for _, name := range objects {
			obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			Expect(clientB.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(`{"data":{"writer":"b","seq":"b"}}`)))).To(Succeed())
		}
		bWrote := time.Now()
		Eventually(func() int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, w := range writes {
				if w.sent.After(bWrote) {
					n++
				}
			}
			return n
		}).WithTimeout(30*time.Second).Should(BeNumerically(">=", 50), "a's writes after b's")
		close(stopA)
		<-aDone
		_, stillLeads = a.Lock.Term()
		Expect(stillLeads).To(BeTrue(), "a still does not know it lost: only the API server stopped its writes")

		mu.Lock()
		defer mu.Unlock()
		var before, after, passedBefore int
		var firstRefused time.Time
		for _, w := range writes {
			if w.err != nil && firstRefused.IsZero() && !w.sent.Before(deleted) {
				firstRefused = w.sent
			}
			if w.sent.Before(deleted) {
				before++
				if w.err == nil {
					passedBefore++
				}
				continue
			}
			if !w.sent.After(tookOver) {
				continue // between the force delete and b's leading: the lock is gone or is b's
			}
			after++
			Expect(apierrors.IsForbidden(w.err)).To(BeTrue(), "a's write sent %s after b led: %v", w.sent.Sub(tookOver), w.err)
			Expect(w.err.Error()).To(ContainSubstring("lifelock fencing"))
			Expect(w.err.Error()).To(ContainSubstring("stamped with term " + termA.String()))
		}
		Expect(passedBefore).To(BeNumerically(">", 0), "a's writes passed while it led (%d sent)", before)
		Expect(after).To(BeNumerically(">=", 50), "a kept writing after b led")
		measure("admission: deposed leader's writes refused after its Pod's force delete", firstRefused.Sub(deleted))
		_, _ = fmt.Fprintf(GinkgoWriter, "a's writes: %d before the force delete (%d passed), %d after b led, all refused\n", before, passedBefore, after)

		// The cluster shows only b's writes.
		for _, name := range objects {
			got, err := cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Data).To(HaveKeyWithValue("writer", "b"), "%s", name)
			Expect(got.Annotations).To(HaveKeyWithValue(fencing.Annotation, termB.String()), "%s", name)
		}

		// A delete by a is refused too (its stamp patch is), and b's delete passes.
		err = clientA.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "obj-0", Namespace: ns}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a's delete: %v", err)
		Expect(clientB.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "obj-0", Namespace: ns}})).To(Succeed())
	})

	It("refuses the operator's unstamped writes and stamped deletes of another term, and leaves other users alone", func(ctx SpecContext) {
		user, cfg := operatorIdentity(ctx, ns)
		bindPolicy(ctx, ns, user, cfg)
		raw, err := client.New(cfg, client.Options{})
		Expect(err).NotTo(HaveOccurred())

		// No lock: every write of the operator is refused (parameterNotFoundAction: Deny).
		noTerm := lifelock.Term{Number: 0, LockUID: "00000000-0000-4000-8000-000000000000", Revision: "1"}
		err = fencing.NewClient(raw, staticFence(noTerm)).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}})
		Expect(err).To(MatchError(ContainSubstring("no params found")), "without a lock")
		Expect(refusedByPolicy(err)).To(BeTrue(), "%v", err)

		// A lock held by someone: its term passes, another is refused, and so is no stamp.
		podA := newPod(ctx, ns, "a")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		term, err := a.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())
		current := fencing.NewClient(raw, a.Lock)
		Expect(current.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}})).To(Succeed())
		err = raw.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}, Data: map[string]string{"k": "v"}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "unstamped: %v", err)
		Expect(err.Error()).To(ContainSubstring("with no term"))
		// The policy sees the object a write produces, not the request: an unstamped patch of an object that
		// the current term stamped leaves that stamp in place, and passes. The client always sends its stamp.
		Expect(raw.Patch(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}},
			client.RawPatch(types.MergePatchType, []byte(`{"data":{"unstamped":"patch"}}`)))).To(Succeed())
		earlier := lifelock.Term{Number: term.Number, LockUID: "another-lock-uid", Revision: "1"}
		stale := fencing.NewClient(raw, staticFence(earlier))
		Expect(apierrors.IsForbidden(stale.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}}))).To(BeTrue())
		_, err = cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, "x", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred(), "the stale delete stored nothing")

		// The administrator is not fenced.
		_, err = cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "admin"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		// Once a released its lock, its client refuses locally: nothing is sent.
		Expect(a.Stop(30 * time.Second)).To(Succeed())
		err = current.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "admin", Namespace: ns}})
		Expect(err).To(HaveOccurred())
		Expect(errors.Is(err, lifelock.ErrReleased)).To(BeTrue(), "%v", err)
	})

	It("fences with a ConfigMap lock too", func(ctx SpecContext) {
		user, cfg := operatorIdentity(ctx, ns)
		policy, binding, err := fencing.Policy(fencing.PolicyOptions{
			LockName: lockName, LockNamespace: ns, User: user, Kind: lifelock.KindConfigMap,
			Resources: []schema.GroupResource{{Resource: "configmaps"}},
		})
		Expect(err).NotTo(HaveOccurred())
		bindObjects(ctx, cfg, policy, binding)
		raw, err := client.New(cfg, client.Options{})
		Expect(err).NotTo(HaveOccurred())

		podA, podB := newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		lockOpts := lifelock.Options{Kind: lifelock.KindConfigMap}
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, Lock: lockOpts})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		termA, err := a.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())
		Expect(fencing.NewClient(raw, a.Lock).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}})).To(Succeed())

		// b takes over from a's evicted Pod: the same lock object, the next term number.
		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, Lock: lockOpts})
		Eventually(b.Lock.Holder).WithTimeout(30 * time.Second).Should(Equal(a.Lock.Identity()))
		Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		termB, err := b.Lock.Fence()
		Expect(err).NotTo(HaveOccurred())
		Expect(termB.LockUID).To(Equal(termA.LockUID))
		Expect(termB.Number).To(Equal(termA.Number + 1))

		stale := fencing.NewClient(raw, staticFence(termA))
		Eventually(func() error {
			return stale.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}, Data: map[string]string{"by": "a"}})
		}).WithTimeout(5 * time.Second).WithPolling(5 * time.Millisecond).Should(Satisfy(apierrors.IsForbidden))
		Expect(fencing.NewClient(raw, b.Lock).Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: ns}, Data: map[string]string{"by": "b"}})).To(Succeed())
	})
})

// staticFence is a Fencer that always answers the same term: a leader that never learns it lost.
type staticFence lifelock.Term

func (s staticFence) Fence() (lifelock.Term, error) { return lifelock.Term(s), nil }

// bindPolicy creates fencing.Policy's policy and binding for the suite's lock in ns, fencing user's writes
// to ConfigMaps, removes them when the spec ends, and waits until the API server enforces them (a dry-run
// create without a stamp, as user, is refused). (The harness runs no policy status controller, so the
// policy's type check is not read here; the specs exercise every expression.)
func bindPolicy(ctx context.Context, ns, user string, cfg *rest.Config) {
	policy, binding, err := fencing.Policy(fencing.PolicyOptions{
		LockName: lockName, LockNamespace: ns, User: user,
		Resources: []schema.GroupResource{{Resource: "configmaps"}},
	})
	Expect(err).NotTo(HaveOccurred())
	bindObjects(ctx, cfg, policy, binding)
}

// bindObjects creates policy and binding, removes them when the spec ends, and waits until the API server
// enforces them for the user of cfg.
func bindObjects(ctx context.Context, cfg *rest.Config, policy *admissionregistrationv1.ValidatingAdmissionPolicy, binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	ns := binding.Spec.ParamRef.Namespace
	vaps := cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	bindings := cp.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	_, err := vaps.Create(ctx, policy, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) { Expect(vaps.Delete(ctx, policy.Name, metav1.DeleteOptions{})).To(Succeed()) })
	_, err = bindings.Create(ctx, binding, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) {
		Expect(bindings.Delete(ctx, binding.Name, metav1.DeleteOptions{})).To(Succeed())
	})

	raw, err := client.New(cfg, client.Options{})
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error {
		return raw.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}}, client.DryRunAll)
	}).WithTimeout(30*time.Second).WithPolling(50*time.Millisecond).Should(Satisfy(refusedByPolicy), "the policy is enforced")
}

// refusedByPolicy reports whether err is a refusal by a ValidatingAdmissionPolicy: 403 Forbidden from a
// failed validation, or 422 Invalid when the binding finds no lock to take as its parameter.
func refusedByPolicy(err error) bool {
	return (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}

// operatorIdentity creates the operator's identity in ns: a ServiceAccount's user name and groups (as its
// token authenticates), bound to extra Roles and to one that writes ConfigMaps. It returns the user name and
// a connection as that user, without a client-side rate limit (the leader writes as fast as it can).
func operatorIdentity(ctx context.Context, ns string, extra ...*rbacv1.Role) (string, *rest.Config) {
	const sa = "operator"
	user := fencing.ServiceAccountUser(ns, sa)
	roles := append(extra, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "configmap-writer", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
	})
	for _, role := range roles {
		_, err := cp.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = cp.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}
	cfg, err := cp.AddUser(user, "system:serviceaccounts", "system:serviceaccounts:"+ns)
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS, cfg.Burst = -1, 0
	return user, cfg
}
