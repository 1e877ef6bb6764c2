package scaffold

import (
	"os"
	"path/filepath"
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/lifelock/lifelock/test/harness"
	"github.com/lifelock/lifelock/test/harness/witness"
)

var _ = Describe("A kubebuilder "+kubebuilderVersion+" project adopting lifelock with the README's diff", func() {
	It("changes at most five lines of cmd/main.go", func() {
		Expect(proj.addedLines).To(BeNumerically("<=", 5), proj.changeSummary())
		Expect(proj.removedLines).To(BeNumerically("<=", proj.addedLines), proj.changeSummary())
	})

	It("runs two replicas with no downward-API env: one leads, the other waits ready, and leads once the leader's Pod is gone", func(ctx SpecContext) {
		s := newScenario(ctx, true)
		a := s.startPod(ctx, "guestbook-a", proj.adoptedManager)
		b := s.startPod(ctx, "guestbook-b", proj.adoptedManager)
		leader, follower := s.electedOf(electTimeout, a, b)
		s.expectHolder(ctx, leader)
		Consistently(s.acting).WithTimeout(followerPatience).Should(ConsistOf(leader.name))
		Expect(follower.ready()).To(Succeed(), "a follower must be ready, or a rollout would stall")
		Expect(follower.proc.Done()).NotTo(BeClosed())

		// The leader's node kills it; its Pod is deleted once its container is written terminated.
		leader.proc.Kill()
		deleted := witness.Now()
		Expect(cp.DeletePodGracefully(ctx, leader.pod)).To(Succeed())
		Eventually(s.acting).WithTimeout(electTimeout).Should(ConsistOf(follower.name))
		s.expectHolder(ctx, follower)
		Expect(s.history().Check()).To(Succeed())
		AddReportEntry("failover: leader's Pod deleted → the other replica acts", (s.startOf(follower.name) - deleted).Round(time.Millisecond).String())
	})

	It("rolls out from the stock (lease mode) Pods to adopted (life mode) Pods without two leaders", func(ctx SpecContext) {
		s := newScenario(ctx, true)
		// Before the rollout: the stock Deployment's two replicas, one of them leading with a renewed Lease.
		old0 := s.startPod(ctx, "guestbook-old-0", proj.stockManager)
		old1 := s.startPod(ctx, "guestbook-old-1", proj.stockManager)
		oldLeader, oldFollower := s.electedOf(electTimeout, old0, old1)

		// RollingUpdate starts a new Pod first: it waits behind the live lease-mode leader, and is ready.
		new0 := s.startPod(ctx, "guestbook-new-0", proj.adoptedManager)
		Consistently(s.acting).WithTimeout(followerPatience).Should(ConsistOf(oldLeader.name))
		Expect(new0.ready()).To(Succeed())

		// Then an old Pod goes and another new one comes; then the last old Pod (the leader) goes. The
		// stock scaffold does not release its lease on shutdown, so the new Pods wait for it to expire.
		s.stop(ctx, oldFollower)
		new1 := s.startPod(ctx, "guestbook-new-1", proj.adoptedManager)
		Consistently(s.acting).WithTimeout(followerPatience).Should(ConsistOf(oldLeader.name))
		s.stop(ctx, oldLeader)
		newLeader, _ := s.electedOf(rolloutTimeout, new0, new1)
		s.expectHolder(ctx, newLeader)
		Expect(s.history().Check()).To(Succeed())
		AddReportEntry("rollout: last lease-mode leader stopped → a life-mode Pod acts",
			(s.startOf(newLeader.name) - s.endOf(oldLeader.name)).Round(time.Millisecond).String())
	})

	Describe("outside a Pod and without election", func() {
		It("without --leader-elect (make run) runs with no election and writes no lock", func(ctx SpecContext) {
			s := newScenario(ctx, true)
			local := s.startLocal(proj.adoptedManager)
			Eventually(s.acting).WithTimeout(electTimeout).Should(ConsistOf(local.name))
			_, err := s.lease(ctx)
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "want no lock, got %v", err)
			Expect(local.proc.Stop(terminateGrace)).To(Succeed())
		})

		It("with --leader-elect, stops with one error that says to run without election", func(ctx SpecContext) {
			s := newScenario(ctx, true)
			local := s.startLocal(proj.adoptedManager, "--leader-elect")
			Eventually(local.proc.Done()).WithTimeout(exitTimeout).Should(BeClosed())
			Expect(local.proc.ExitCode()).To(Equal(1))
			Expect(local.proc.Output()).To(And(ContainSubstring("not running in a Kubernetes Pod"), ContainSubstring("without --leader-elect")))
			Expect(s.history().Spans()).To(BeEmpty())
			_, err := s.lease(ctx)
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "want no lock, got %v", err)
		})

		It("with --leader-elect-mode=life but no --leader-elect, refuses to run unelected", func(ctx SpecContext) {
			s := newScenario(ctx, true)
			local := s.startLocal(proj.adoptedManager, "--leader-elect-mode=life")
			Eventually(local.proc.Done()).WithTimeout(exitTimeout).Should(BeClosed())
			Expect(local.proc.ExitCode()).To(Equal(1))
			Expect(local.proc.Output()).To(ContainSubstring("add --leader-elect, or drop --leader-elect-mode"))
			Expect(s.history().Spans()).To(BeEmpty())
		})
	})

	It("without the README's RBAC rule, stops with one error that names it", func(ctx SpecContext) {
		s := newScenario(ctx, false)
		r := s.startPod(ctx, "guestbook-a", proj.adoptedManager)
		Eventually(r.proc.Done()).WithTimeout(exitTimeout).Should(BeClosed())
		Expect(r.proc.ExitCode()).To(Equal(1))
		Expect(r.proc.Output()).To(ContainSubstring("pods"))
		Expect(r.proc.Output()).To(ContainSubstring("missing permission"))
		Expect(s.history().Spans()).To(BeEmpty())
		_, err := s.lease(ctx)
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "want no lock, got %v", err)
	})

	It("keeps the project's own make test working offline, as the README says", func(ctx SpecContext) {
		k8s := filepath.Join(proj.dir, "bin", "k8s")
		Expect(os.MkdirAll(k8s, 0o755)).To(Succeed())
		Expect(os.Symlink(harness.AssetsDir(), filepath.Join(k8s, envtestK8sVersion+"-"+runtime.GOOS+"-"+runtime.GOARCH))).To(Succeed())
		out, err := proj.run(ctx, scaffoldMakeTest...)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(MatchRegexp(`(?m)^ok\s+example.com/guestbook/internal/controller\s`))
	}, SpecTimeout(10*time.Minute))
})
