package e2e

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/lifelock/lifelock/test/harness"
)

var _ = Describe("Managers in one process", func() {
	It("never run their controllers at once, through hand-offs, crashes and Pod deletions", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		hist := harness.NewHistory()
		const n = 3
		var cands []*harness.Candidate
		start := func(i int) *harness.Candidate {
			o := harness.CandidateOptions{LockName: lockName, Pod: newPod(ctx, ns, fmt.Sprintf("m-%d", i)), History: hist}
			if i%2 == 1 {
				o.Manager = noRelease // odd ones crash instead of releasing
			}
			c := startCandidate(ctx, o)
			cands = append(cands, c)
			return c
		}
		for i := range n {
			start(i)
		}
		next := n
		for round := range 6 {
			var leader *harness.Candidate
			Eventually(func() *harness.Candidate {
				for _, c := range cands {
					select {
					case <-c.Done():
						continue // stopped in an earlier round
					default:
					}
					select {
					case <-c.Elected():
						leader = c
						return c
					default:
					}
				}
				return nil
			}).WithTimeout(15*time.Second).ShouldNot(BeNil(), "round %d: no leader", round)
			Expect(hist.Check()).To(Succeed())
			Expect(leader.Stop(10 * time.Second)).To(Succeed())
			Expect(cp.DeletePodGracefully(ctx, leader.Pod)).To(Succeed())
			start(next)
			next++
		}
		Expect(len(hist.Spans())).To(BeNumerically(">=", 6))
		Expect(hist.Check()).To(Succeed())
	})
})
