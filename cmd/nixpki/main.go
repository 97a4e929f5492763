// Command nixpki is a private PKI for NixOS fleets: a CA with an ACME server, and
// certified Nix signing keys. The commands here only parse flags and call internal/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"nixpki/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	stopProfile := startCPUProfile(os.Getenv("NIXPKI_CPUPROFILE"))
	err := root.ExecuteContext(ctx)
	stopProfile()
	var code exitCode
	if errors.As(err, &code) {
		os.Exit(int(code)) // the command has said why
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nixpki:", err)
		os.Exit(1)
	}
}

// version is set at build time (-ldflags "-X main.version=1.2.3"); otherwise it is the
// module version Go recorded, or "devel".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// exitCode ends the program with this status and nothing more printed.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// startCPUProfile writes a CPU profile of the whole command to file when it is set
// (NIXPKI_CPUPROFILE=push.pprof, for go tool pprof); the returned function ends it.
func startCPUProfile(file string) func() {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nixpki: NIXPKI_CPUPROFILE:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "nixpki",
		Short:         "A private PKI for NixOS fleets: CA, ACME server, certified Nix signing keys",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildVersion(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			// --database-url overrides database.url for every command, like the
			// environment variable it sets.
			if u, _ := cmd.Flags().GetString("database-url"); u != "" {
				return os.Setenv(config.DatabaseURLEnv, u)
			}
			return nil
		},
	}
	root.SetVersionTemplate("nixpki {{.Version}}\n")
	root.PersistentFlags().String("database-url", "", "PostgreSQL database (postgres://USER@HOST/DB or key=value DSN); overrides database.url and "+config.DatabaseURLEnv)
	root.AddCommand(newInitCmd(), newServeCmd(), newCertCmd(), newNixOSCmd(), newTrustCmd(), newACMECmd(), newNixCmd(), newVerifyCmd(), newGateCmd(), newLogCmd(), newDoctorCmd(), newConfigCmd(), newDBCmd())
	return root
}

// logger writes human-readable logs to stderr; NIXPKI_LOG=debug shows more.
func logger() *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("NIXPKI_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// printJSON writes v as indented JSON, the --json output of every command.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, jsonTermSafe(string(b))+"\n")
	return err
}

// explainHangup answers SIGHUP, which would otherwise end the server, with a log line:
// the configuration is read at start, so a change takes a restart.
func explainHangup(ctx context.Context, log *slog.Logger, what string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Warn("SIGHUP: the configuration is read only at start; restart " + what + " to apply changes (systemctl restart, or stop and start it)")
			}
		}
	}()
}
