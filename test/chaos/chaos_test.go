package chaos

import (
	"flag"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/lifelock/lifelock/test/harness"
)

// The run's shape. `make test` runs the default, a short run that draws every kind of disruption four times;
// `make chaos ROUNDS=1000 SEED=…` a long one.
var (
	rounds     = flag.Int("chaos.rounds", 4*len(allKinds), "number of disruptions")
	seed       = flag.Int64("chaos.seed", 0, "seed of the random choices (0: from the clock); printed, so a run can be replayed")
	candidates = flag.Int("chaos.candidates", 3, "number of candidate processes kept running")
	reportPath = flag.String("chaos.report", "", "if set, write the Markdown table of the run here")
	kindsFlag  = flag.String("chaos.kinds", "", "comma-separated kinds of disruption to draw from, e.g. kill,term (default: all; see kindNames)")
)

func TestChaos(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "multi-process chaos")
}

var (
	cp      *harness.ControlPlane
	faults  *Faults
	manager string // the built examples/manager
)

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(GinkgoLogr)
	Expect(*candidates).To(BeNumerically(">=", 3), "-chaos.candidates")
	Expect(parseKinds(*kindsFlag)).Error().NotTo(HaveOccurred(), "-chaos.kinds")
	var err error
	manager, err = harness.BuildExampleManager(ctx, GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())

	cp, err = harness.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	faults = NewFaults()
	DeferCleanup(faults.Close)
}, NodeTimeout(5*time.Minute))

var _ = It("keeps one leader at a time through seeded random disruptions of real processes", func(ctx SpecContext) {
	s := *seed
	if s == 0 {
		s = time.Now().UnixNano()
	}
	GinkgoWriter.Printf("chaos: seed %d, %d rounds, %d candidates (replay: make chaos SEED=%d ROUNDS=%d)\n", s, *rounds, *candidates, s, *rounds)
	AddReportEntry("seed", s)
	r := newRunner(ctx, s)
	start := time.Now()
	for i := range *rounds {
		r.round(ctx, i)
	}
	table := r.table(s, time.Since(start))
	AddReportEntry("chaos table", table)
	if *reportPath != "" {
		Expect(os.WriteFile(*reportPath, []byte(table), 0o644)).To(Succeed())
	}
	Expect(r.history().Check()).To(Succeed())
	Expect(r.lockStates.violations()).To(BeEmpty(), "the lock left the states docs/design.md names")
}, NodeTimeout(24*time.Hour))
