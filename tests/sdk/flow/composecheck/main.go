// compose-check loads Docker Compose files with compose-go, the Compose Specification's
// reference loader (the one `docker compose` uses): it validates each file against the
// specification's schema and resolves it as `docker compose config` would. The CoyoteFlow
// tests run it on the compose target's output (tests/sdk/flow/test_compose.py).
//
//	go build -o .coyote/tools/bin/coyote-compose-check ./tests/sdk/flow/composecheck
//	coyote-compose-check docker-compose.yml
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: coyote-compose-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, name := range os.Args[1:] {
		path, err := filepath.Abs(name)
		if err == nil {
			err = check(path)
		}
		if err != nil {
			fmt.Printf("%s: invalid: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid\n", name)
	}
	if failed {
		os.Exit(1)
	}
}

func check(path string) error {
	options, err := cli.NewProjectOptions(
		[]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return err
	}
	_, err = options.LoadProject(context.Background())
	return err
}
