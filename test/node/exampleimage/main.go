// Command exampleimage writes a container image of one static binary as a tar archive that
// `ctr images import`, `kind load image-archive` and `docker load` all read. make example-image runs it on
// examples/manager:
//
//	go run ./node/exampleimage -binary manager -name lifelock-example:latest -o lifelock-example.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lifelock/lifelock/test/node"
)

func main() {
	binary := flag.String("binary", "", "the static binary to put in the image as /<its base name>, the entrypoint")
	name := flag.String("name", "lifelock-example:latest", "the image's name")
	user := flag.String("user", "65532:65532", "the user the image runs as (the example's deployment.yaml asks for a non-root one)")
	out := flag.String("o", "lifelock-example.tar", "the archive to write")
	flag.Parse()
	if *binary == "" {
		fmt.Fprintln(os.Stderr, "exampleimage: -binary is required")
		os.Exit(2)
	}
	base := filepath.Base(*binary)
	err := node.WriteImageOf(*out, node.Image{
		Name: *name, Files: map[string]string{base: *binary}, Entrypoint: []string{"/" + base}, User: *user,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "exampleimage:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s: image %s (%s), entrypoint /%s, user %s\n", *out, *name, node.FullName(*name), base, *user)
}
