package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifelock/lifelock/test/component"
)

// The README shows the adoption diff the suite applies, byte for byte, so the two cannot drift apart.
func TestReadmeShowsTheTestedDiff(t *testing.T) {
	diff, err := os.ReadFile(filepath.Join("..", "..", adoptionDiff))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if block := "```diff\n" + string(diff) + "```\n"; !strings.Contains(string(readme), block) {
		t.Errorf("README.md does not show %s as it is: paste the file, unchanged, into the ```diff block of "+
			"the section \"Adopt it in a kubebuilder project\"", adoptionDiff)
	}
	// The RBAC section shows the patch config/rbac/kustomization.yaml documents, which the suites apply.
	patch, err := component.DocumentedPatch(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if block := "\npatches:\n" + patch + "```\n"; !strings.Contains(string(readme), block) {
		t.Errorf("README.md does not show the lock-name patch of config/rbac/kustomization.yaml as it is:\n%s", patch)
	}
	if cmd := strings.Join(scaffoldMakeTest, " "); !strings.Contains(string(readme), cmd+"\n") {
		t.Errorf("README.md does not give the scaffold's offline test command the suite runs: %s", cmd)
	}
}
