package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/store"
)

func newDBCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Manage the CA's database: schema migrations, moving from SQLite to PostgreSQL",
	}
	cmd.AddCommand(newDBMigrateCmd(), newDBCopyCmd())
	return cmd
}

// openDBNoCheck opens the database a data directory names without refusing an old
// schema (for the commands that change or compare it).
func openDBNoCheck(cmd *cobra.Command, dir string) (*store.DB, store.Settings, error) {
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, store.Settings{}, err
	}
	s := ca.DatabaseSettings(dir, cfg)
	db, err := store.OpenAsIs(cmd.Context(), s)
	return db, s, err
}

func newDBMigrateCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "migrate --dir D [--database-url URL]",
		Short: "Create or update the database's tables (the one command that needs the right to create tables)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, s, err := openDBNoCheck(cmd, dir)
			if err != nil {
				return err
			}
			defer db.Close()
			before, _, err := db.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			if err := db.Migrate(cmd.Context()); err != nil {
				return fmt.Errorf("migrating %s: %w", s.Describe(), err)
			}
			after, _, err := db.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			if before == after {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: schema version %d, current\n", s.Describe(), after)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: schema version %d -> %d\n", s.Describe(), before, after)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	return cmd
}

func newDBCopyCmd() *cobra.Command {
	var from, to, passwordFile string
	cmd := &cobra.Command{
		Use:   "copy --from D --to postgres://…",
		Short: "Copy every record of a data directory's database into an empty, migrated PostgreSQL database and verify the counts",
		Long: "Copies certificates, revocations and CRL numbers, ACME accounts, EAB keys and orders, and Nix records,\n" +
			"keeping serials and IDs; spent nonces are not copied. Stop `nixpki serve` first, run `nixpki db migrate`\n" +
			"against the destination, copy, then set database.url (or NIXPKI_DATABASE_URL) and start serving from it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return fmt.Errorf("--from (a data directory) and --to (a postgres:// URL) are both required")
			}
			// --from names the directory's own database, not the one an override selects.
			os.Unsetenv(config.DatabaseURLEnv)
			src, s, err := openDBNoCheck(cmd, from)
			if err != nil {
				return err
			}
			defer src.Close()
			if !store.IsPostgresURL(to) {
				return fmt.Errorf("--to %q: want postgres://USER@HOST/DATABASE or a key=value DSN", store.RedactDSN(to))
			}
			dst, err := store.OpenPostgres(cmd.Context(), to, store.PostgresOptions{PasswordFile: passwordFile})
			if err != nil {
				return err
			}
			defer dst.Close()
			counts, err := store.Copy(cmd.Context(), src, dst)
			if err != nil {
				return fmt.Errorf("copying %s to %s: %w", s.Describe(), store.RedactDSN(to), err)
			}
			out := cmd.OutOrStdout()
			for _, c := range counts {
				fmt.Fprintf(out, "%-16s %d\n", c.Table, c.Rows)
			}
			fmt.Fprintf(out, "copied %s to %s; counts verified\n", s.Describe(), store.RedactDSN(to))
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "data directory whose database is copied")
	cmd.Flags().StringVar(&to, "to", "", "PostgreSQL database to copy into (postgres://… or key=value DSN)")
	cmd.Flags().StringVar(&passwordFile, "to-password-file", "", "file holding the destination role's password")
	return cmd
}
