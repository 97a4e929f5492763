package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/gate"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Settings files"}
	var file string
	var isGate bool
	check := &cobra.Command{
		Use:   "check --config FILE [--gate]",
		Short: "Validate a settings file without touching any state: exit 0, or one line per problem naming its key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file = settingsFile(file)
			if file == "" {
				return errors.New("--config FILE is required")
			}
			data, err := config.ReadSettings(file)
			if err != nil {
				return err
			}
			if isGate {
				_, err = gate.ParseSettings(data)
			} else {
				var c config.Config
				if c, err = config.Parse(data); err == nil {
					err = ca.CheckSettings(c)
				}
			}
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", file, line)
				}
				return exitCode(1)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", file)
			return nil
		},
	}
	check.Flags().StringVar(&file, "config", "", "the settings file (default $"+config.EnvConfig+")")
	check.Flags().BoolVar(&isGate, "gate", false, "the file holds a gate's settings (gate serve --config)")
	cmd.AddCommand(check)
	return cmd
}
