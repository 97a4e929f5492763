package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/gate"
	"nixpki/internal/tlog"
	"nixpki/internal/x509util"
)

func newGateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "A Nix binary cache that admits only what certified keys signed and serves it re-signed with its own key",
	}
	key := &cobra.Command{Use: "key", Short: "The gate's Nix signing key, made before deployment so targets can trust it"}
	key.AddCommand(newGateKeyGenerateCmd())
	cmd.AddCommand(newGateInitCmd(), newGateServeCmd(), newGatePendingCmd(), newGateAuditCmd(), newGateCRLCmd(), key)
	return cmd
}

func newGateInitCmd() *cobra.Command {
	var o gate.InitOptions
	cmd := &cobra.Command{
		Use:   "init --dir G --name host-a --root root.crt",
		Short: "Create a gate: its Nix key (G/gate.pub), configuration, database and log; prints the NixOS snippet",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Dir == "" || o.Name == "" {
				return errors.New("--dir and --name are required")
			}
			cfg, pub, err := gate.Init(o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Gate %s created in %s\nKey: %s (public half in %s)\n\n", cfg.Name, o.Dir, pub, filepath.Join(o.Dir, gate.PublicFile))
			fmt.Fprintf(out, "NixOS configuration of the targets behind this gate:\n\n%s", gate.NixOSSnippet(cfg, pub))
			return gateInitNotes(out, o, cfg)
		},
	}
	cmd.Flags().StringVar(&o.Dir, "dir", "", "gate directory to create")
	cmd.Flags().StringVar(&o.Name, "name", "", "the gate's name, as certificates' targets name it (e.g. host-a)")
	cmd.Flags().StringVar(&o.RootFile, "root", "", "the CA root certificate (PEM) to trust")
	cmd.Flags().StringVar(&o.PasswordFile, "password-file", "", "password file encrypting gate.sec (default: generate G/secrets/password)")
	cmd.Flags().StringVar(&o.KeyName, "key-name", "", "the gate key's Nix name (default <name>-gate-1)")
	cmd.Flags().StringVar(&o.URL, "url", "", "URL targets use to reach the gate (default http://<listen> for plain HTTP, https://<name>:<port> with TLS)")
	cmd.Flags().StringVar(&o.Listen, "listen", "", "address to serve on (default 127.0.0.1:8501; plain HTTP only on loopback)")
	cmd.Flags().StringVar(&o.TLSCertFile, "tls-cert", "", "serve HTTPS with this certificate chain (PEM), re-read when it changes")
	cmd.Flags().StringVar(&o.TLSKeyFile, "tls-key", "", "the key of --tls-cert (PEM, plain or encrypted with the gate's password)")
	cmd.Flags().StringVar(&o.ACMEDirectory, "acme-directory", "", "serve HTTPS with a certificate from this ACME directory (e.g. https://ca:8443/acme/acme/directory), validated by tls-alpn-01")
	return cmd
}

// gateInitNotes adds what the targets need besides the substituter: trust in the
// CA's root when the gate's HTTPS certificate comes from it, and for ACME the port
// the CA validates on.
func gateInitNotes(out io.Writer, o gate.InitOptions, cfg gate.Config) error {
	if !cfg.TLSEnabled() {
		fmt.Fprintf(out, "\nThe gate serves plain HTTP on %s (loopback): run it on the target itself, or give it\n--tls-cert/--tls-key or --acme-directory to serve other machines over HTTPS.\n", cfg.Listen)
		return nil
	}
	root, err := x509util.ReadCertFile(filepath.Join(o.Dir, gate.RootFile))
	if err != nil {
		return err
	}
	fromCA := cfg.ACME.Directory != ""
	if cfg.TLS.CertFile != "" {
		data, err := os.ReadFile(cfg.TLS.CertFile)
		if err != nil {
			return fmt.Errorf("--tls-cert: %w", err)
		}
		chain, err := x509util.ParseCertsPEM(data)
		if err != nil {
			return fmt.Errorf("--tls-cert %s: %w", cfg.TLS.CertFile, err)
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		roots := x509.NewCertPool()
		roots.AddCert(root)
		_, err = chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		fromCA = err == nil
	}
	if fromCA {
		fmt.Fprintf(out, "\nThe gate's HTTPS certificate comes from this CA: the targets trust its root with\n%s", ca.NixOSTrustSnippet(root))
	}
	if cfg.ACME.Directory != "" {
		fmt.Fprintf(out, "\nACME: the CA validates the gate's names with tls-alpn-01, connecting to port 443 of\neach name (nixpki serve --acme-tls-port changes it): the gate must answer there, by\nlistening on :443 or by a forward from 443 to %s.\n", cfg.Listen)
	}
	return nil
}

func newGateServeCmd() *cobra.Command {
	var dir, listen, passwordFile, settingsFlag, metricsListen string
	cmd := &cobra.Command{
		Use:   "serve --dir G [--config FILE] [--listen ADDR]",
		Short: "Serve the gate: the Nix HTTP binary-cache protocol (HTTPS, or plain HTTP on loopback only); with --config, creates G on first run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			explainHangup(cmd.Context(), log, "nixpki gate serve")
			if err := startPprof(os.Getenv("NIXPKI_PPROF"), log); err != nil {
				return err
			}
			g, created, err := gate.OpenSettings(dir, settingsFile(settingsFlag), passwordFile, log)
			if err != nil {
				return err
			}
			defer g.Close()
			if created {
				fmt.Fprintf(cmd.OutOrStdout(), "Gate %s created in %s\nNixOS configuration of the targets behind this gate:\n\n%s\n", g.Cfg.Name, dir, gate.NixOSSnippet(g.Cfg, g.Key.Public()))
			}
			scheme := "http"
			if g.Cfg.TLSEnabled() {
				scheme = "https"
			}
			wrap, err := startGateMetrics(cmd.Context(), metricsListen, g, log)
			if err != nil {
				return err
			}
			return g.Serve(cmd.Context(), gate.ServeOptions{Listen: listen, Wrap: wrap, Ready: func(addr string) {
				fmt.Fprintf(cmd.OutOrStdout(), "Gate %s serving on %s://%s (key %s)\n", g.Cfg.Name, scheme, addr, g.Key.Public())
			}})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.Flags().StringVar(&settingsFlag, "config", "", "settings file (JSON, read-only, e.g. in /nix/store; default $"+config.EnvConfig+"); G then holds only state")
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve on (default: listen in the settings)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "password file for gate.sec (default: the configured one)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", metricsListenHelp)
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newGatePendingCmd() *cobra.Command {
	var dir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pending --dir G",
		Short: "List store paths waiting for more signatures or for their references",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			recs, err := gate.ListPending(dir)
			if err != nil {
				return err
			}
			if asJSON {
				type item struct {
					Path    string        `json:"path"`
					Since   time.Time     `json:"since"`
					Signers []gate.Signer `json:"signers"`
					Needed  int           `json:"needed"`
					Reason  string        `json:"reason"`
				}
				items := []item{}
				for _, r := range recs {
					items = append(items, item{r.StorePath, r.FirstSeen.UTC(), r.Signers, r.Needed, r.Reason})
				}
				return printJSON(cmd.OutOrStdout(), items)
			}
			if len(recs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No pending paths.")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PATH\tSIGNATURES\tSINCE\tWHY")
			for _, r := range recs {
				var who []string
				for _, s := range r.Signers {
					who = append(who, s.Subject)
				}
				fmt.Fprintf(tw, "%s\t%d of %d (%s)\t%s\t%s\n", termSafe(r.StorePath), len(r.Signers), r.Needed, termSafe(strings.Join(who, ",")), r.FirstSeen.UTC().Format(time.RFC3339), termSafe(r.Reason))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newGateAuditCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "audit --dir G [PATH]",
		Short: "From the verified log: who introduced a store path, under which certificate, and when (all admissions without PATH)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := ""
			if len(args) == 1 {
				q = args[0]
			}
			evs, v, err := gate.Audit(dir, q)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Log verified: %d entries, root %s\n", v.Head.Size, v.Head.Root)
			if len(evs) == 0 {
				if q != "" {
					return fmt.Errorf("the log has no event about %s", q)
				}
				fmt.Fprintln(out, "No admissions yet.")
			}
			for _, e := range evs {
				fmt.Fprintln(out, e.Describe())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "The gate's tamper-evident log (RFC 9162 Merkle tree, signed tree heads)",
	}
	cmd.AddCommand(newLogVerifyCmd(), newLogShowCmd(), newLogHeadCmd())
	return cmd
}

func newLogVerifyCmd() *cobra.Command {
	var dir, since string
	cmd := &cobra.Command{
		Use:   "verify --dir G [--since HEAD.json]",
		Short: "Recompute the log's Merkle tree and check every signed tree head (detects altered, reordered or deleted entries), and that the gate's database serves only what the log admitted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := gate.VerifyLog(dir)
			if err != nil {
				return fmt.Errorf("log verification FAILED: %w", err)
			}
			if since != "" {
				data, err := os.ReadFile(since)
				if err != nil {
					return err
				}
				old, err := tlog.ParseHead([]byte(strings.TrimSpace(string(data))))
				if err != nil {
					return fmt.Errorf("%s: %w", since, err)
				}
				pub, err := gate.ReadPublic(dir)
				if err != nil {
					return err
				}
				if err := v.CheckExtends(old, pub.Key); err != nil {
					return fmt.Errorf("log verification FAILED: %w", err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Log OK: %d entries, root %s, signed %s\n", v.Head.Size, v.Head.Root, v.Head.Time.UTC().Format(time.RFC3339))
			n, err := gate.CheckDB(dir, v)
			if err != nil {
				return fmt.Errorf("database check FAILED: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Database OK: the %d paths served agree with the log (admission, NarHash, signers)\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.Flags().StringVar(&since, "since", "", "an older tree head (from nixpki log head) the log must extend (consistency proof)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newLogShowCmd() *cobra.Command {
	var dir, typ string
	cmd := &cobra.Command{
		Use:   "show --dir G [--type admission]",
		Short: "Print the verified log's entries, one JSON object a line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := gate.VerifyLog(dir)
			if err != nil {
				return fmt.Errorf("log verification FAILED: %w", err)
			}
			for _, r := range v.Records {
				if typ == "" || r.Entry.Type == typ {
					fmt.Fprintf(cmd.OutOrStdout(), "%d\t%s\n", r.Index, jsonTermSafe(string(r.Raw)))
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.Flags().StringVar(&typ, "type", "", "only entries of this type (certificate, crl, admission, pending, rejection, quarantine, …)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newLogHeadCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "head --dir G",
		Short: "Print the verified log's signed tree head, to keep elsewhere and check later with log verify --since",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := gate.VerifyLog(dir)
			if err != nil {
				return fmt.Errorf("log verification FAILED: %w", err)
			}
			b, _ := v.Head.MarshalJSON()
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "gate directory")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func newGateKeyGenerateCmd() *cobra.Command {
	var name, keyName, outSecret, outPublic string
	cmd := &cobra.Command{
		Use:   "generate --gate NAME --out-secret F --out-public F",
		Short: "Generate a gate's Nix key (for key_file in its settings); prints the public key targets trust",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || outSecret == "" || outPublic == "" {
				return errors.New("--gate, --out-secret and --out-public are required")
			}
			if keyName == "" {
				keyName = gate.DefaultConfig(name).KeyName
			}
			pub, err := generateNixKey(keyName, outSecret, outPublic)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n\nIn the gate's settings: key_file = the secret (passed with LoadCredential, e.g. \"$CREDENTIALS_DIRECTORY/gate-key\"), key_name = %q.\nOn the targets: services.nixpki-gate.publicKey = %q;\n", pub, keyName, pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "gate", "", "the gate's name, as certificates' targets name it (e.g. host-a)")
	cmd.Flags().StringVar(&keyName, "key-name", "", "the key's Nix name (default <gate>-gate-1)")
	cmd.Flags().StringVar(&outSecret, "out-secret", "", "where to write the secret key (mode 0600)")
	cmd.Flags().StringVar(&outPublic, "out-public", "", "where to write the public key")
	return cmd
}
