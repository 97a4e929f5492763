package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/x509util"
)

// initFlags are the choices of `nixpki init`; `serve` takes them too, for the first run.
type initFlags struct {
	name, keyType, externalURL string
	dns, ips, permDNS, permIP  []string
	offlineRoot                bool
	listen, httpListen         string // set by serve's first run
}

func (f *initFlags) register(fs *pflag.FlagSet) {
	d := config.Defaults()
	fs.StringVar(&f.name, "name", d.Name, "CA name (subject of the root: \"<name> Root CA\")")
	fs.StringVar(&f.keyType, "key-type", d.KeyType, "CA key type: p256, p384, ed25519, rsa3072")
	fs.StringSliceVar(&f.dns, "dns", nil, "DNS names the server answers on (default localhost)")
	fs.StringSliceVar(&f.ips, "ip", nil, "IP addresses the server answers on (default 127.0.0.1 and ::1 when no --dns)")
	fs.StringSliceVar(&f.permDNS, "permitted-dns", nil, "name constraint on the TLS intermediate: permitted DNS suffixes")
	fs.StringSliceVar(&f.permIP, "permitted-ip", nil, "name constraint on the TLS intermediate: permitted IP CIDRs")
	fs.StringVar(&f.externalURL, "external-url", "", "plain-HTTP base URL for CRL, OCSP and caIssuers URLs (default http://<first name>:8080)")
	fs.BoolVar(&f.offlineRoot, "offline-root", false, "write the root key out for the operator to carry away; the server runs with intermediates only")
}

func (f *initFlags) config() config.Config {
	c := config.Defaults()
	c.Name, c.KeyType, c.ExternalURL, c.OfflineRoot = f.name, f.keyType, f.externalURL, f.offlineRoot
	c.PermittedDNS, c.PermittedIP = f.permDNS, f.permIP
	if f.listen != "" {
		c.Listen = f.listen
	}
	if f.httpListen != "" {
		c.HTTPListen = f.httpListen
	}
	if len(f.dns) > 0 || len(f.ips) > 0 {
		c.DNSNames, c.IPAddresses = f.dns, f.ips
	} else {
		c.IPAddresses = []string{"127.0.0.1", "::1"}
	}
	return c
}

func newInitCmd() *cobra.Command {
	var f initFlags
	var dir, passwordFile string
	cmd := &cobra.Command{
		Use:   "init --dir D",
		Short: "Create a CA: a root and two intermediates (TLS, Nix signing), keys encrypted at rest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd, dir, passwordFile, &f, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "data directory to create (must be new or empty)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the password for the CA keys (default: generate one into D/secrets/password)")
	cmd.MarkFlagRequired("dir")
	f.register(cmd.Flags())
	return cmd
}

func runInit(cmd *cobra.Command, dir, passwordFile string, f *initFlags, out io.Writer) error {
	res, err := ca.Init(cmd.Context(), ca.InitOptions{Dir: dir, Config: f.config(), PasswordFile: passwordFile})
	if err != nil {
		return err
	}
	reportInit(out, dir, res)
	return nil
}

func reportInit(out io.Writer, dir string, res *ca.InitResult) {
	fmt.Fprintf(out, "Initialised CA in %s\n", dir)
	fmt.Fprintf(out, "Root certificate: %s\n", ca.CertPath(dir, ca.IssuerRoot))
	fmt.Fprintf(out, "Root SHA-256 fingerprint: %s\n", x509util.Fingerprint(res.Root))
	if res.GeneratedPassword != "" {
		fmt.Fprintf(out, "The CA keys are encrypted with a generated password in %s (mode 0600).\n", res.GeneratedPassword)
		fmt.Fprintf(out, "  To keep it elsewhere: move it, then pass --password-file NEWPATH (or set password_file in the settings).\n")
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(out, "NOTE: %s\n", w)
	}
	if res.OfflineRootKey != "" {
		fmt.Fprintf(out, "OFFLINE ROOT: the root key is in %s. Carry it away (with its password) and delete it here;\n", res.OfflineRootKey)
		fmt.Fprintf(out, "  the server needs only the intermediates.\n")
	}
}

// initialised reports whether dir holds a CA.
func initialised(dir string) bool { return config.Initialised(dir) }

// settingsFile is the --config flag's value, else $NIXPKI_CONFIG.
func settingsFile(flag string) string {
	if flag != "" {
		return flag
	}
	return os.Getenv(config.EnvConfig)
}

// refuseInitFlags: with a settings file, what init would take from flags comes from
// the settings, so the two cannot disagree.
func refuseInitFlags(cmd *cobra.Command) error {
	for flag, key := range map[string]string{"name": "name", "key-type": "key_type", "dns": "dns_names", "ip": "ip_addresses",
		"permitted-dns": "permitted_dns", "permitted-ip": "permitted_ip", "external-url": "external_url", "offline-root": "offline_root"} {
		if cmd.Flags().Changed(flag) {
			return fmt.Errorf("--%s: with a settings file, set %s in the settings instead", flag, key)
		}
	}
	return nil
}

// firstStartFromSettings creates the CA in dir from a settings file: the directory
// records only what creation decided.
func firstStartFromSettings(cmd *cobra.Command, dir, settings, passwordFile string, out io.Writer) error {
	data, err := config.ReadSettings(settings)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", settings, err)
	}
	if passwordFile == "" && cfg.PasswordFile != "" {
		if passwordFile, err = config.SecretPath(dir, cfg.PasswordFile); err != nil {
			return fmt.Errorf("%s: password_file: %w", settings, err)
		}
	}
	res, err := ca.Init(cmd.Context(), ca.InitOptions{Dir: dir, Config: cfg, PasswordFile: passwordFile, FromSettings: true})
	if err != nil {
		return fmt.Errorf("creating the CA from %s: %w", settings, err)
	}
	reportInit(out, dir, res)
	return nil
}
