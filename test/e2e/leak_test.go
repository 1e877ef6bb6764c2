package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/goleak"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/pkg/manageropts"
	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("Goroutines", func() {
	It("a manager from manageropts leaves none behind, as leader or follower", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		hist := harness.NewHistory()
		start := func(pod string) (manager.Manager, context.CancelFunc, chan error) {
			o := &manageropts.Options{Lock: lifelock.Options{PodName: pod, PodNamespace: ns}}
			mgr, err := o.NewManager(cp.Config, manager.Options{
				LeaderElection: true, LeaderElectionID: lockName, LeaderElectionNamespace: ns,
				Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(mgr.Add(harness.Actor(pod, hist))).To(Succeed())
			mctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- mgr.Start(mctx) }()
			return mgr, cancel, done
		}
		newPod(ctx, ns, "a")
		newPod(ctx, ns, "b")
		// client-go keeps one pooled connection per distinct transport config for the life of the process
		// (until it has been idle 90 s), shared by every client built with that config. lifelock's client
		// asks for uncompressed responses, a config of its own, so this spec opens that pooled connection
		// before it takes the snapshot, as the harness's clients already opened theirs: what is left over
		// is then only what the managers started.
		warm, err := lifelock.New(ctx, cp.Config, "warm-up", lifelock.Options{PodName: "a", PodNamespace: ns})
		Expect(err).NotTo(HaveOccurred())
		warm.Close()
		before := goleak.IgnoreCurrent()
		a, stopA, doneA := start("a")
		Eventually(a.Elected()).WithTimeout(10 * time.Second).Should(BeClosed())
		_, stopB, doneB := start("b")
		Consistently(doneB).WithTimeout(time.Second).ShouldNot(Receive())

		stopB() // a follower's shutdown
		Eventually(doneB).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
		stopA() // the leader's shutdown, with release
		Eventually(doneA).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
		Expect(hist.Check()).To(Succeed())
		Eventually(func() error {
			return goleak.Find(before, goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})
})
