// Package scaffold proves the README's adoption story on a real kubebuilder project: it installs
// kubebuilder, scaffolds a project, applies exactly the README's diff, builds the manager and runs it as
// separate processes playing Pods on the harness's control plane (kube-apiserver, etcd and the real garbage
// collector), with no POD_NAME in their environment and only the RBAC the scaffold and the diff give them.
// One spec deploys the project's config/default with lifelock's RBAC component (config/rbac) in place of
// the scaffold's leader-election Role and runs the manager as the ServiceAccount it renders.
package scaffold

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/lifelock/lifelock/test/harness"
)

var (
	cp   *harness.ControlPlane
	proj *project
	repo string // the checkout under test
)

func TestScaffold(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "kubebuilder scaffold adoption")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(GinkgoLogr) // envtest's own messages, with the spec's output
	var err error
	repo, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	tmp, err := os.MkdirTemp("", "lifelock-scaffold-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, tmp)

	start := time.Now()
	proj, err = buildProject(ctx, repo, tmp)
	Expect(err).NotTo(HaveOccurred())
	AddReportEntry("scaffold and builds", time.Since(start).Round(time.Second).String()+" ("+strings.Join(proj.timings, ", ")+")")
	AddReportEntry("cmd/main.go changed by the adoption diff", proj.changeSummary())

	cp, err = harness.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	_, err = envtest.InstallCRDs(cp.Config, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(proj.dir, "config", "crd", "bases")},
		ErrorIfPathMissing: true,
	})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(15*time.Minute))

// Timeouts for conditions the specs wait on. Lease mode's defaults (15 s lease, 2 s retry) bound the
// rollout: a life candidate takes the lock only once the lease-mode leader's lease has expired.
const (
	electTimeout     = 20 * time.Second
	rolloutTimeout   = 40 * time.Second
	exitTimeout      = 20 * time.Second
	terminateGrace   = 10 * time.Second // the scaffold's terminationGracePeriodSeconds
	followerPatience = 5 * time.Second  // how long a follower is watched to stay a follower
)

func (p *project) changeSummary() string {
	return fmt.Sprintf("%d lines added, %d removed", p.addedLines, p.removedLines)
}
