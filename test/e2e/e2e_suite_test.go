// Package e2e holds the envtest suites: real kube-apiserver and etcd, the real garbage collector, and
// candidates built with manageropts or driven by client-go's LeaderElector.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/lifelock/lifelock/test/harness"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "lifelock envtest suite")
}

var cp *harness.ControlPlane

const node = "node-1"

// The suite runs in parallel (make test runs it with ginkgo -p): the first process starts the control
// plane and the suite's Node, every process attaches to them, and each spec works in its own namespace.
// Specs that stop the API server or need its certificate authority are Serial: Ginkgo runs them last, alone,
// in the first process.
var _ = SynchronizedBeforeSuite(func(ctx SpecContext) []byte {
	setLogger()
	var err error
	cp, err = harness.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	Expect(cp.EnsureNode(ctx, node)).To(Succeed())
	return cp.Share()
}, func(data []byte) {
	if cp != nil {
		return // the first process started it
	}
	setLogger()
	var err error
	cp, err = harness.Attach(data)
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(3*time.Minute))

var _ = SynchronizedAfterSuite(func() {}, func() {
	if cp != nil {
		Expect(cp.Stop()).To(Succeed())
	}
})

// setLogger sends controller-runtime's and client-go's logs to the spec's output.
func setLogger() {
	logger := zap.New(zap.WriteTo(GinkgoWriter), zap.UseFlagOptions(&zap.Options{Development: true, TimeEncoder: zapcore.RFC3339NanoTimeEncoder}))
	logf.SetLogger(logger)
	klog.SetLogger(logger) // client-go's elector logs through klog: keep it with the spec's output
}

// newNamespace creates a namespace for one spec.
func newNamespace(ctx context.Context) string {
	ns, err := cp.CreateNamespace(ctx, "lifelock")
	Expect(err).NotTo(HaveOccurred())
	return ns
}

// newCheckedScenario creates a namespace and a history for one spec, and checks when the spec ends that no
// two leaders acted at once. Call it from BeforeEach.
func newCheckedScenario(ctx context.Context) (string, *harness.History) {
	hist := harness.NewHistory()
	DeferCleanup(func() { Expect(hist.Check()).To(Succeed()) })
	return newNamespace(ctx), hist
}

// newPod creates a running candidate Pod.
func newPod(ctx context.Context, ns, name string) *corev1.Pod {
	pod, err := cp.CreatePod(ctx, ns, name, node)
	Expect(err).NotTo(HaveOccurred())
	return pod
}

// newPendingPod creates a Pod on the suite's Node as a kubelet first shows it (no IP yet), for a process
// that cp.StartContainer runs as its container.
func newPendingPod(ctx context.Context, ns, name string) *corev1.Pod {
	pod, err := cp.CreatePendingPod(ctx, ns, name, node)
	Expect(err).NotTo(HaveOccurred())
	return pod
}

// startCandidate starts an in-process manager for pod and stops it when the spec ends.
func startCandidate(ctx context.Context, o harness.CandidateOptions) *harness.Candidate {
	c, err := cp.StartCandidate(ctx, o)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = c.Stop(30 * time.Second) })
	return c
}

// noRelease makes stopping a candidate play a crash: its lock is not released.
func noRelease(mo *manager.Options) { mo.LeaderElectionReleaseOnCancel = false }

// gapBetween waits until to has acted after from stopped (a candidate's leader-only runnable starts a
// moment after Elected closes) and returns the time between the two. Overlaps are for hist.Check to catch.
func gapBetween(hist *harness.History, from, to string) time.Duration {
	var gap time.Duration
	Eventually(func() (err error) {
		gap, err = hist.Gap(from, to)
		return err
	}).WithTimeout(10 * time.Second).WithPolling(5 * time.Millisecond).Should(Succeed())
	return gap
}

// measuredPrefix marks the report entries measure adds, so that the report collects them from every
// parallel process.
const measuredPrefix = "measured: "

// measure records a latency or a count under name and prints it.
func measure(name string, v any) {
	AddReportEntry(measuredPrefix+name, fmt.Sprint(v))
	_, _ = fmt.Fprintf(GinkgoWriter, "%s: %v\n", name, v)
}

var _ = ReportAfterSuite("measured latencies", func(r Report) {
	measured := map[string][]string{}
	for _, spec := range r.SpecReports {
		for _, e := range spec.ReportEntries {
			if name, ok := strings.CutPrefix(e.Name, measuredPrefix); ok {
				measured[name] = append(measured[name], e.StringRepresentation())
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(measured)) {
		fmt.Printf("measured %-55s %v\n", n+":", measured[n])
	}
})

var listAll = metav1.ListOptions{}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
