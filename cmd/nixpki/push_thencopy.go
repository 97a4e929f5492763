package main

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// checkCopyTarget refuses a --then-copy target that ssh would read as an option or
// that is not one word: it is handed to nix-copy-closure, which hands it to ssh.
func checkCopyTarget(target string) error {
	if target == "" || strings.HasPrefix(target, "-") || strings.ContainsAny(target, " \t\n'\"\\") {
		return fmt.Errorf("--then-copy %q: give the target as ssh does, [USER@]HOST (e.g. alice@host-a)", target)
	}
	return nil
}

// thenCopy runs what nixos-rebuild --target-host … --use-substitutes runs to copy a
// closure: nix-copy-closure --to TARGET --use-substitutes PATH…, so the target's Nix
// substitutes the paths from its gate. The command goes to stderr before it runs.
func thenCopy(ctx context.Context, target string, paths []string, stderr io.Writer) error {
	args := append([]string{"--to", target, "--use-substitutes"}, paths...)
	fmt.Fprintf(stderr, "nixpki: running nix-copy-closure %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "nix-copy-closure", args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nix-copy-closure --to %s --use-substitutes: %w (paths the gate has not admitted cannot reach the target)", target, err)
	}
	return nil
}
