package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

func newNixOSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nixos", Short: "NixOS configuration snippets"}
	var dir string
	trust := &cobra.Command{
		Use:   "trust --dir D",
		Short: "Print the NixOS snippet that makes a host trust the root (security.pki.certificates)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := x509util.ReadCertFile(ca.CertPath(dir, ca.IssuerRoot))
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), ca.NixOSTrustSnippet(root))
			return err
		},
	}
	trust.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	cmd.AddCommand(trust, newNixOSModuleSnippetCmd())
	return cmd
}

func newTrustCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "trust", Short: "Distribute the root to hosts and containers"}
	var dir, out string
	var withSystem bool
	bundle := &cobra.Command{
		Use:   "bundle --dir D --out ca-bundle.crt",
		Short: "Write a CA bundle for containers (SSL_CERT_FILE, REQUESTS_CA_BUNDLE): the root, plus system roots with --with-system",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := x509util.ReadCertFile(ca.CertPath(dir, ca.IssuerRoot))
			if err != nil {
				return err
			}
			b, err := ca.Bundle(root, withSystem)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	bundle.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	bundle.Flags().StringVar(&out, "out", "", "output file (default stdout)")
	bundle.Flags().BoolVar(&withSystem, "with-system", false, "append the system's CA roots")
	cmd.AddCommand(bundle)
	return cmd
}

// records is what the listing commands read from a CA's database.
type records interface {
	GetCert(ctx context.Context, serial string) (*store.Cert, error)
	ListCerts(ctx context.Context, f store.CertFilter) ([]*store.Cert, error)
	ListNixTokens(ctx context.Context) ([]*store.NixToken, error)
	ListNixAttempts(ctx context.Context, limit int) ([]*store.NixAttempt, error)
	NixCounter(ctx context.Context, name string) (int64, error)
	Close() error
}

// openDB opens the data directory's database without loading any key (read-only
// commands need no password).
func openDB(cmd *cobra.Command, dir string) (records, error) {
	cfg, err := config.LoadDir(dir, settingsFile(""))
	if err != nil {
		return nil, err
	}
	db, err := store.Open(cmd.Context(), ca.DatabaseSettings(dir, cfg))
	if err != nil {
		return nil, err
	}
	return db, nil
}
