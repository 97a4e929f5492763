package main

import (
	"context"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nixpki/internal/acme"
	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/store"
)

func newACMECmd() *cobra.Command {
	cmd := &cobra.Command{Use: "acme", Short: "Manage the ACME server: External Account Binding keys"}
	eab := &cobra.Command{Use: "eab", Short: "Create and list External Account Binding keys (for provisioners with require_eab)"}
	eab.AddCommand(newEABCreateCmd(), newEABListCmd())
	cmd.AddCommand(eab)
	return cmd
}

// eabKeys is what the EAB commands use of the CA's database.
type eabKeys interface {
	acme.EABKeyStore
	ListACMEEABKeys(ctx context.Context, provisioner string) ([]*store.ACMEEABKey, error)
	Close() error
}

// openACMEStore opens a data directory's database without the CA keys (no password)
// and returns the configured provisioner names.
func openACMEStore(cmd *cobra.Command, dir string) (eabKeys, []string, error) {
	cfg, err := config.LoadDir(dir, settingsFile(""))
	if err != nil {
		return nil, nil, err
	}
	names := []string{acme.DefaultProvisioner}
	if len(cfg.ACME.Provisioners) > 0 {
		names = names[:0]
		for _, p := range cfg.ACME.Provisioners {
			names = append(names, p.Name)
		}
	}
	db, err := store.Open(cmd.Context(), ca.DatabaseSettings(dir, cfg))
	if err != nil {
		return nil, nil, err
	}
	return db, names, nil
}

func newEABCreateCmd() *cobra.Command {
	var dir, prov, note string
	cmd := &cobra.Command{
		Use:   "create --dir D [--provisioner acme] [--note TEXT]",
		Short: "Create an External Account Binding key; prints the key ID and the HMAC key for the client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, names, err := openACMEStore(cmd, dir)
			if err != nil {
				return err
			}
			defer db.Close()
			if !slices.Contains(names, prov) {
				return fmt.Errorf("no ACME provisioner %q in %s/config.json (have: %v)", prov, dir, names)
			}
			k, err := acme.NewEABKey(cmd.Context(), db, prov, note, time.Now)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "kid:  %s\nhmac: %s\n", k.KID, acme.EncodeEABKey(k.Key))
			fmt.Fprintf(out, "It binds one account. With lego: --eab --kid %s --hmac %s\n", k.KID, acme.EncodeEABKey(k.Key))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().StringVar(&prov, "provisioner", acme.DefaultProvisioner, "ACME provisioner the key is for")
	cmd.Flags().StringVar(&note, "note", "", "a note to remember the key by (who it is for)")
	return cmd
}

func newEABListCmd() *cobra.Command {
	var dir, prov string
	cmd := &cobra.Command{
		Use:   "list --dir D [--provisioner P]",
		Short: "List External Account Binding keys and the accounts they are bound to (HMAC keys are not shown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, _, err := openACMEStore(cmd, dir)
			if err != nil {
				return err
			}
			defer db.Close()
			ks, err := db.ListACMEEABKeys(cmd.Context(), prov)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KID\tPROVISIONER\tCREATED\tBOUND ACCOUNT\tNOTE")
			for _, k := range ks {
				bound := "-"
				if k.BoundAccount != "" {
					bound = k.BoundAccount + " (" + k.BoundAt.Format(time.RFC3339) + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.KID, k.Provisioner, k.CreatedAt.Format(time.RFC3339), bound, k.Note)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().StringVar(&prov, "provisioner", "", "only this provisioner's keys")
	return cmd
}
