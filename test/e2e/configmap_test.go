package e2e

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("ConfigMap lock", func() {
	var (
		ns   string
		hist *harness.History
	)
	BeforeEach(func(ctx SpecContext) { ns, hist = newCheckedScenario(ctx) })

	configMapKind := lifelock.Options{Kind: lifelock.KindConfigMap}
	getLock := func(ctx SpecContext) (*corev1.ConfigMap, error) {
		return cp.Client.CoreV1().ConfigMaps(ns).Get(ctx, lockName, metav1.GetOptions{})
	}
	// operatorLibOwner is the one ownerReference operator-lib's leader.Become writes, and reads, on its lock.
	operatorLibOwner := func(pod *corev1.Pod) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	}
	// leaderAndFollower starts a leader on Pod a and then a follower on Pod b, both with ConfigMap locks, and
	// waits until the follower has seen the leader.
	leaderAndFollower := func(ctx SpecContext, manager harness.CandidateOptions) (a, b *harness.Candidate, podA, podB *corev1.Pod) {
		podA, podB = newPod(ctx, ns, "a"), newPod(ctx, ns, "b")
		o := manager
		o.LockName, o.Pod, o.History, o.Lock = lockName, podA, hist, configMapKind
		a = startCandidate(ctx, o)
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		o.Pod = podB
		b = startCandidate(ctx, o)
		Eventually(b.Lock.Holder).WithTimeout(30 * time.Second).Should(Equal(a.Lock.Identity()))
		return a, b, podA, podB
	}

	It("says why nobody leads while the lock is a ConfigMap owned by no Pod, and leads once it is removed", func(ctx SpecContext) {
		_, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: lockName}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		podB := newPod(ctx, ns, "b")
		b := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podB, History: hist, Lock: configMapKind})
		Eventually(func(g Gomega) {
			evs, err := cp.Events(ctx, ns, "ConfigMap", lockName)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(evs).To(ContainElement(And(
				HaveField("Reason", lifelock.ReasonHolderLooksStuck),
				HaveField("Type", corev1.EventTypeWarning),
				HaveField("Message", And(ContainSubstring("owned by no Pod"), ContainSubstring("kubectl -n "+ns+" delete configmaps "+lockName))),
			)))
		}).WithTimeout(10*time.Second).Should(Succeed(), "a follower waits on an ownerless lock in silence")
		Consistently(b.Elected()).WithTimeout(2*time.Second).ShouldNot(BeClosed(), "an ownerless lock is never free by itself")
		Expect(cp.Client.CoreV1().ConfigMaps(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(b.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
	})

	It("is an empty ConfigMap owned by the leader's Pod, in operator-lib's format, and no Lease", func(ctx SpecContext) {
		podA := newPod(ctx, ns, "a")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Lock: configMapKind})
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		Expect(a.Lock.Kind()).To(Equal(lifelock.KindConfigMap))

		cm, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.OwnerReferences).To(HaveExactElements(operatorLibOwner(podA)), "exactly one owner: the Pod, no controller, no blockOwnerDeletion")
		Expect(cm.Data).To(BeEmpty())
		Expect(cm.BinaryData).To(BeEmpty())
		// Created in operator-lib's format; once leading, lifelock marks it settled (operator-lib ignores
		// annotations).
		Expect(cm.Annotations).To(Equal(map[string]string{lifelock.SettledAnnotation: "true", lifelock.StopsWithinAnnotation: statedBy(a)}))
		Expect(cm.Labels).To(BeEmpty())
		Expect(cm.Immutable).To(BeNil())

		_, err = cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a ConfigMap lock creates no Lease: %v", err)

		term, leading := a.Lock.Term()
		Expect(leading).To(BeTrue())
		Expect(term).To(Equal(lifelock.Term{Number: 0, LockUID: string(cm.UID), Revision: cm.ResourceVersion}))
		Eventually(cp.EventReasons).WithArguments(ctx, ns, "ConfigMap", lockName).WithTimeout(30*time.Second).
			Should(Equal([]string{lifelock.ReasonBecameLeader}), "Events name the ConfigMap as the lock object")
	})

	It("fails over through the real garbage collector when the leader crashed and its Pod is deleted", func(ctx SpecContext) {
		a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{Manager: noRelease})
		before, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		// A write by b would show on the lock at once (its Elected waits the acquisition grace first).
		unchanged := func(g Gomega) {
			cm, err := getLock(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cm.ResourceVersion).To(Equal(before.ResourceVersion), "the lock was written")
			g.Expect(b.Elected()).NotTo(BeClosed())
		}
		Consistently(ctx, unchanged).WithTimeout(2 * time.Second).Should(Succeed())

		Expect(a.Stop(30 * time.Second)).To(Succeed()) // a crash: no release
		Consistently(ctx, unchanged).WithTimeout(3*time.Second).Should(Succeed(), "the lock is not free while the holder's Pod lives")
		still, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(still.UID).To(Equal(before.UID))
		Expect(still.OwnerReferences).To(HaveExactElements(operatorLibOwner(podA)))

		Expect(cp.DeletePodGracefully(ctx, podA)).To(Succeed())
		deleted := time.Now()
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		measure("ConfigMap lock: failover after Pod deletion (proven stopped, GC)", time.Since(deleted))

		after, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.OwnerReferences).To(HaveExactElements(operatorLibOwner(podB)))
		Expect(after.Annotations).NotTo(HaveKey(lifelock.ReleasedAnnotation))
		if after.UID != before.UID {
			// The garbage collector deleted a's ConfigMap, and b created a new one: operator-lib's format, term 0.
			measure("ConfigMap lock: crash failover path", "GC deleted, follower created")
			Expect(after.Annotations).To(Equal(map[string]string{lifelock.SettledAnnotation: "true", lifelock.StopsWithinAnnotation: statedBy(b)}))
		} else {
			// b patched the owner before the garbage collector got to it (its delete carries a resourceVersion
			// precondition, so it then leaves the ConfigMap alone).
			measure("ConfigMap lock: crash failover path", "follower took over before GC")
			Expect(after.Annotations).To(HaveKeyWithValue(lifelock.TransitionsAnnotation, "1"))
		}
		// Nothing deletes b's lock afterwards.
		Consistently(func(g Gomega) {
			cm, err := getLock(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cm.UID).To(Equal(after.UID))
		}).WithTimeout(2 * time.Second).Should(Succeed())
		Expect(b.Done()).NotTo(BeClosed())
	})

	It("is marked released and then deleted or taken over when the leader shuts down, so the follower leads while the old Pod lives", func(ctx SpecContext) {
		a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{})
		before, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		events := watchLockConfigMap(ctx, ns, before.ResourceVersion)

		Expect(a.Stop(30 * time.Second)).To(Succeed()) // graceful: the default release on cancel
		stopped := time.Now()
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		measure("ConfigMap lock: release hand-off (stop returned → follower elected)", time.Since(stopped))
		gap := gapBetween(hist, "a", "b")
		measure("ConfigMap lock: release hand-off: gap between a stopping and b acting", gap)

		old, err := cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(old.UID).To(Equal(podA.UID))
		Expect(old.DeletionTimestamp).To(BeNil())
		Expect(old.Status.Phase).To(Equal(corev1.PodRunning), "b did not wait for a's Pod to go")

		var after *corev1.ConfigMap
		Eventually(func(g Gomega) {
			after, err = getLock(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(after.OwnerReferences).To(HaveExactElements(operatorLibOwner(podB)))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(after.Annotations).NotTo(HaveKey(lifelock.ReleasedAnnotation))

		// What happened to the lock, in order: a marked it released, still owned by a's Pod (an operator-lib
		// candidate never sees a ConfigMap without a Pod owner), then a deleted it or b took it over.
		var seen []watch.Event
		Eventually(func(g Gomega) {
			seen = events()
			g.Expect(seen).NotTo(BeEmpty())
			g.Expect(seen[len(seen)-1].Object.(*corev1.ConfigMap).UID).To(Equal(after.UID))
			g.Expect(seen[len(seen)-1].Object.(*corev1.ConfigMap).ResourceVersion).To(Equal(after.ResourceVersion))
		}).WithTimeout(30*time.Second).Should(Succeed(), "the watch shows b's lock")
		marked := -1
		for i, e := range seen {
			cm := e.Object.(*corev1.ConfigMap)
			if e.Type != watch.Deleted {
				Expect(cm.OwnerReferences).To(HaveLen(1), "event %d (%s): a ConfigMap lock always has exactly one Pod owner", i, e.Type)
			}
			if _, ok := cm.Annotations[lifelock.ReleasedAnnotation]; ok && marked < 0 {
				marked = i
			}
		}
		Expect(marked).To(BeNumerically(">=", 0), "a never marked its lock released: %s", describeConfigMapEvents(seen))
		mark := seen[marked].Object.(*corev1.ConfigMap)
		Expect(seen[marked].Type).To(Equal(watch.Modified))
		Expect(mark.UID).To(Equal(before.UID))
		Expect(mark.OwnerReferences).To(HaveExactElements(operatorLibOwner(podA)))
		Expect(mark.Annotations).To(HaveKeyWithValue(lifelock.ReleasedAnnotation, a.Lock.Identity()))
		for _, e := range seen[:marked] {
			Expect(e.Object.(*corev1.ConfigMap).OwnerReferences).To(HaveExactElements(operatorLibOwner(podA)), "b wrote before a released: %s", describeConfigMapEvents(seen))
		}
		next := seen[marked+1]
		if next.Type == watch.Deleted {
			measure("ConfigMap lock: release path", "marked, deleted by a, created by b")
			Expect(next.Object.(*corev1.ConfigMap).UID).To(Equal(before.UID))
			Expect(after.UID).NotTo(Equal(before.UID))
			Expect(after.Annotations).To(Equal(map[string]string{lifelock.SettledAnnotation: "true", lifelock.StopsWithinAnnotation: statedBy(b)}), "b created it in operator-lib's format, then marked it settled")
		} else {
			measure("ConfigMap lock: release path", "marked, taken over by b")
			Expect(next.Object.(*corev1.ConfigMap).OwnerReferences).To(HaveExactElements(operatorLibOwner(podB)))
			Expect(after.UID).To(Equal(before.UID))
			Expect(after.Annotations).To(HaveKeyWithValue(lifelock.TransitionsAnnotation, "1"))
		}
	})

	It("is taken over from a Failed holder by patching its owner, keeping the ConfigMap's labels and data", func(ctx SpecContext) {
		a, b, podA, podB := leaderAndFollower(ctx, harness.CandidateOptions{})
		// Someone put labels and data on the lock: a takeover keeps them.
		patch := []byte(`{"metadata":{"labels":{"team":"infra"},"annotations":{"note":"keep me"}},"data":{"k":"v"}}`)
		before, err := cp.Client.CoreV1().ConfigMaps(ns).Patch(ctx, lockName, types.MergePatchType, patch, metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		Consistently(ctx, func(g Gomega) {
			cm, err := getLock(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cm.ResourceVersion).To(Equal(before.ResourceVersion), "the lock was written after the foreign edit")
			g.Expect(a.Done()).NotTo(BeClosed(), "a foreign edit of the lock is not a loss")
		}).WithTimeout(2 * time.Second).Should(Succeed())

		Expect(cp.SetPodPhase(ctx, podA, corev1.PodFailed, "Evicted")).To(Succeed())
		failed := time.Now()
		Eventually(a.Done()).WithTimeout(15*time.Second).Should(BeClosed(), "the leader self-fences when its Pod is Failed")
		Expect(a.Err()).To(MatchError(ContainSubstring("leader election lost")))
		Eventually(b.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		measure("ConfigMap lock: takeover from a Failed holder (grace paid)", time.Since(failed))

		after, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(after.UID).To(Equal(before.UID), "the same ConfigMap, patched, not re-created")
		Expect(after.OwnerReferences).To(HaveExactElements(operatorLibOwner(podB)))
		Expect(after.Annotations).To(Equal(map[string]string{"note": "keep me", lifelock.TransitionsAnnotation: "1", lifelock.SettledAnnotation: "true", lifelock.StopsWithinAnnotation: statedBy(b)}))
		Expect(after.Labels).To(Equal(map[string]string{"team": "infra"}))
		Expect(after.Data).To(Equal(map[string]string{"k": "v"}))
		_, err = cp.Client.CoreV1().Pods(ns).Get(ctx, podA.Name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred(), "the holder's Pod still exists: no GC was involved")

		term, leading := b.Lock.Term()
		Expect(leading).To(BeTrue())
		Expect(term).To(Equal(lifelock.Term{Number: 1, LockUID: string(after.UID), Revision: after.ResourceVersion}))
	})

	It("never takes a ConfigMap that has no Pod owner, and acquires once it is deleted", func(ctx SpecContext) {
		byHand, err := cp.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: lockName},
			Data:       map[string]string{"made": "by hand"},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		podA := newPod(ctx, ns, "a")
		a := startCandidate(ctx, harness.CandidateOptions{LockName: lockName, Pod: podA, History: hist, Lock: configMapKind})
		Consistently(a.Elected()).WithTimeout(5 * time.Second).ShouldNot(BeClosed())
		Expect(a.Lock.Holder()).NotTo(BeEmpty())
		cm, err := getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.ResourceVersion).To(Equal(byHand.ResourceVersion), "the candidate wrote to a ConfigMap it does not hold")

		// The candidate was waiting, not broken.
		Expect(cp.Client.CoreV1().ConfigMaps(ns).Delete(ctx, lockName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(a.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		cm, err = getLock(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.OwnerReferences).To(HaveExactElements(operatorLibOwner(podA)))
	})
})

// watchLockConfigMap records every change of the ConfigMap lockName in ns after resourceVersion rv, until the
// spec ends; the returned function gives the changes seen so far, oldest first.
func watchLockConfigMap(ctx SpecContext, ns, rv string) func() []watch.Event {
	w, err := cp.Client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", lockName).String(),
		ResourceVersion: rv,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	var (
		mu   sync.Mutex
		seen []watch.Event
	)
	go func() {
		defer GinkgoRecover()
		for e := range w.ResultChan() {
			if _, ok := e.Object.(*corev1.ConfigMap); !ok {
				continue // a watch error (the spec's end)
			}
			mu.Lock()
			seen = append(seen, e)
			mu.Unlock()
		}
	}()
	return func() []watch.Event {
		mu.Lock()
		defer mu.Unlock()
		return append([]watch.Event(nil), seen...)
	}
}

// describeConfigMapEvents lists watch events of ConfigMaps for a failure message.
func describeConfigMapEvents(evs []watch.Event) string {
	s := ""
	for _, e := range evs {
		cm := e.Object.(*corev1.ConfigMap)
		s += fmt.Sprintf("%s uid=%s rv=%s owners=%v annotations=%v; ", e.Type, cm.UID, cm.ResourceVersion, cm.OwnerReferences, cm.Annotations)
	}
	return s
}

// statedBy is the StopsWithinAnnotation a harness candidate (a manageropts manager, which stops on
// Lock.Lost) writes with its acquisitions, with the default timings.
func statedBy(c *harness.Candidate) string {
	return lifelock.TimingsFor(0, 0).FenceBound.String() + " " + c.Lock.Identity()
}
