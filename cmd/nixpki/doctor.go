package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nixpki/internal/config"
	"nixpki/internal/doctor"
)

func newDoctorCmd() *cobra.Command {
	var dir, configFile, gateDir, gateConfig string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor --dir D [--config F] | --gate G [--gate-config F]",
		Short: "Check a CA's and a gate's health: CA and CRL validity, keys, database, clock, hosts that stopped renewing, the gate's CRL age and log",
		Long: `Check a CA's and a gate's health, each check with a status.
Exit status: 0 all ok, 2 something to know (info), 3 a warning, 4 something critical.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" && gateDir == "" {
				return errors.New("give the CA's data directory (--dir D, with --config F if its settings live elsewhere) and/or a gate (--gate G)")
			}
			configFile = settingsFile(configFile)
			if configFile != "" && dir == "" {
				return errors.New("--config F needs --dir D, the CA's state directory")
			}
			var r doctor.Report
			if dir != "" {
				doctor.CheckCA(cmd.Context(), doctor.CAOptions{Dir: dir, ConfigFile: configFile}, &r)
			}
			if gateDir != "" {
				doctor.CheckGate(cmd.Context(), gateDir, gateConfig, time.Now(), &r)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, r); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "STATUS\tCHECK\tDETAIL")
				for _, c := range r.Checks {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Status, c.Name, c.Detail)
				}
				tw.Flush()
				fmt.Fprintf(out, "\nOverall: %s\n", r.Status)
			}
			if r.Status != doctor.OK {
				return exitCode(r.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "the CA's data directory")
	cmd.Flags().StringVar(&configFile, "config", "", "the CA's settings file, when it was created from one (default $"+config.EnvConfig+")")
	cmd.Flags().StringVar(&gateDir, "gate", "", "a gate directory to check")
	cmd.Flags().StringVar(&gateConfig, "gate-config", "", "the gate's settings file, when it was created from one")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the checks as JSON")
	return cmd
}
