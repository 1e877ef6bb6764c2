package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/lifelock/lifelock/pkg/lifelock"
	"github.com/lifelock/lifelock/test/harness"
)

// plainProgram is a program with plain client-go and no controller-runtime: a Lock, and client-go's
// LeaderElector run with the configuration the lock hands it (Lock.ElectionConfig).
type plainProgram struct {
	lock      *lifelock.Lock
	elected   chan struct{}
	stopWork  context.CancelFunc // stops the leader's work
	workDone  chan struct{}
	stopElect context.CancelFunc // then the elector, which releases the lock
	done      chan struct{}
}

func startPlainProgram(ctx context.Context, ns, pod string, hist *harness.History) *plainProgram {
	lock, err := lifelock.New(ctx, cp.Config, lockName, lifelock.Options{PodName: pod, PodNamespace: ns})
	Expect(err).NotTo(HaveOccurred())
	p := &plainProgram{lock: lock, elected: make(chan struct{}), workDone: make(chan struct{}), done: make(chan struct{})}
	workCtx, stopWork := context.WithCancel(ctx)
	electCtx, stopElect := context.WithCancel(ctx)
	p.stopWork, p.stopElect = stopWork, stopElect
	cfg := lock.ElectionConfig(leaderelection.LeaderCallbacks{
		OnStartedLeading: func(ctx context.Context) {
			defer close(p.workDone)
			close(p.elected)
			beat, end := hist.Begin(pod)
			defer end()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-workCtx.Done():
					return
				case <-t.C:
					beat()
				}
			}
		},
		OnStoppedLeading: func() {},
	})
	go func() {
		defer close(p.done)
		defer lock.Close()
		leaderelection.RunOrDie(electCtx, cfg)
	}()
	DeferCleanup(func() { p.stop() })
	return p
}

// stop shuts the program down as ElectionConfig asks: the leader's work first, then the elector.
func (p *plainProgram) stop() {
	p.stopWork()
	select {
	case <-p.elected:
		<-p.workDone
	default:
	}
	p.stopElect()
	<-p.done
}

var _ = Describe("Plain client-go", func() {
	It("runs client-go's elector with Lock.ElectionConfig: one leader, and a hand-off when the leader shuts down", func(ctx SpecContext) {
		ns, hist := newCheckedScenario(ctx)
		newPod(ctx, ns, "a")
		podB := newPod(ctx, ns, "b")
		a := startPlainProgram(ctx, ns, "a", hist)
		Eventually(a.elected).WithTimeout(10 * time.Second).Should(BeClosed())
		b := startPlainProgram(ctx, ns, "b", hist)
		Eventually(b.lock.Holder).WithTimeout(5 * time.Second).Should(Equal(a.lock.Identity()))
		Consistently(b.elected).WithTimeout(time.Second).ShouldNot(BeClosed(), "b leads while a's Pod lives")

		stopped := time.Now()
		a.stop()
		Eventually(b.elected).WithTimeout(10 * time.Second).Should(BeClosed())
		measure("plain client-go: hand-off on shutdown (stop → follower elected)", time.Since(stopped))
		l, err := cp.Client.CoordinationV1().Leases(ns).Get(ctx, lockName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(l.OwnerReferences).To(ConsistOf(HaveField("UID", podB.UID)))
		// A program with plain client-go relies on the elector to stop: it states no fence bound.
		Expect(l.Annotations).NotTo(HaveKey(lifelock.StopsWithinAnnotation))
		Eventually(hist.Acting).WithTimeout(time.Second).Should(ConsistOf("b"))
	})
})
