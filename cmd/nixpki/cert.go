package main

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

func newCertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "Issue, list, show and revoke certificates directly (no ACME)"}
	cmd.AddCommand(newCertIssueCmd(), newCertListCmd(), newCertShowCmd(), newCertRevokeCmd())
	return cmd
}

// caFlags are shared by every command that opens the CA.
type caFlags struct{ dir, passwordFile, settings string }

func (f *caFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().StringVar(&f.passwordFile, "password-file", "", "password file for the CA keys (default: the one recorded at init)")
	cmd.Flags().StringVar(&f.settings, "config", "", "settings file of a CA created from one (default $"+config.EnvConfig+")")
}

func (f *caFlags) open(cmd *cobra.Command) (*ca.CA, error) {
	return ca.OpenSettings(cmd.Context(), f.dir, settingsFile(f.settings), f.passwordFile, logger())
}

func newCertIssueCmd() *cobra.Command {
	var cf caFlags
	var sans []string
	var valid time.Duration
	var keyType, csrFile, outCert, outKey, requester string
	var clientAuth bool
	cmd := &cobra.Command{
		Use:   "issue --san NAMES --out-cert F [--out-key K | --csr F]",
		Short: "Issue a TLS certificate for DNS names and IPs; writes the leaf followed by its intermediate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if outCert == "" {
				return fmt.Errorf("--out-cert is required")
			}
			req := ca.TLSRequest{Names: sans, Validity: valid, ClientAuth: clientAuth,
				Meta: ca.Meta{Requester: requester, Method: "cli"}}
			var key crypto.Signer
			if csrFile != "" && (outKey != "" || cmd.Flags().Changed("key-type")) {
				return fmt.Errorf("--csr certifies the key in the CSR, which stays with whoever made it: leave out --out-key and --key-type")
			}
			if csrFile != "" {
				csr, err := readCSR(csrFile)
				if err != nil {
					return err
				}
				req.CSR = csr
			} else {
				if outKey == "" {
					return fmt.Errorf("--out-key is required when no --csr is given (nixpki generates the key)")
				}
				kt, err := keys.ParseType(keyType)
				if err != nil {
					return err
				}
				if key, err = keys.Generate(kt); err != nil {
					return err
				}
				req.PublicKey = key.Public()
			}
			// Check the outputs before issuing, so a bad path records nothing.
			for _, p := range []string{outCert, outKey} {
				if p == "" {
					continue
				}
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s already exists: refusing to overwrite it", p)
				}
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			iss, err := c.IssueTLS(cmd.Context(), req)
			if err != nil {
				return err
			}
			if key != nil {
				der, err := x509.MarshalPKCS8PrivateKey(key)
				if err != nil {
					return err
				}
				if err := keys.WritePrivateFile(outKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
					return err
				}
			}
			if err := os.WriteFile(outCert, iss.ChainPEM(), 0o644); err != nil {
				return err
			}
			for _, n := range iss.Notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Issued %s for %s, valid until %s\n", strings.ToUpper(x509util.SerialHex(iss.Cert.SerialNumber)),
				strings.Join(sanList(iss.Cert), ", "), iss.Cert.NotAfter.Format(time.RFC3339))
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringSliceVar(&sans, "san", nil, "DNS names and IP addresses, comma-separated (default: the CSR's)")
	cmd.Flags().DurationVar(&valid, "valid", 0, "validity (default policy.default_validity, 8760h)")
	cmd.Flags().StringVar(&keyType, "key-type", "p256", "key type to generate: p256, p384, ed25519, rsa3072")
	cmd.Flags().StringVar(&csrFile, "csr", "", "PEM CSR to certify instead of generating a key (then no --out-key or --key-type)")
	cmd.Flags().StringVar(&outCert, "out-cert", "", "where to write the certificate chain (PEM: leaf, intermediate)")
	cmd.Flags().StringVar(&outKey, "out-key", "", "where to write the generated private key (PKCS#8 PEM, mode 0600); required without --csr")
	cmd.Flags().StringVar(&requester, "requester", currentUser(), "who asked, recorded with the certificate")
	cmd.Flags().BoolVar(&clientAuth, "client-auth", false, "allow TLS client authentication too")
	return cmd
}

func readCSR(path string) (*x509.CertificateRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	csr, err := ca.ParseCSR(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return csr, nil
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

func sanList(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// certJSON is the --json shape of a recorded certificate.
type certJSON struct {
	Serial    string     `json:"serial"`
	Issuer    string     `json:"issuer"`
	Subject   string     `json:"subject"`
	SANs      []string   `json:"sans"`
	NotBefore time.Time  `json:"not_before"`
	NotAfter  time.Time  `json:"not_after"`
	Requester string     `json:"requester"`
	Method    string     `json:"method"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    *int       `json:"revocation_reason,omitempty"`
	// A Nix signing certificate's constraints.
	KeyName string   `json:"key_name,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Scope   string   `json:"scope,omitempty"`
}

// nixConstraints reads a Nix signing certificate's key name, targets and scope;
// nil for any other certificate.
func nixConstraints(c *store.Cert) *nixcert.Constraints {
	if c.Issuer != "nix" {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil
	}
	id, err := nixcert.ParseCertificate(leaf)
	if err != nil {
		return nil
	}
	return &id.Constraints
}

// names is what a certificate is for, as a listing shows it: its SANs, or a Nix
// certificate's key name, targets and scope.
func names(c *store.Cert) string {
	if n := nixConstraints(c); n != nil {
		return fmt.Sprintf("key %s targets %s scope %s", n.KeyName, strings.Join(n.Targets, ","), n.Scope)
	}
	return strings.Join(c.SANs, ",")
}

func toJSON(c *store.Cert) certJSON {
	j := certJSON{Serial: strings.ToUpper(c.Serial), Issuer: c.Issuer, Subject: c.Subject, SANs: c.SANs,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Requester: c.Requester, Method: c.Method, RevokedAt: c.RevokedAt}
	if c.Revoked() {
		j.Reason = &c.Reason
	}
	if j.SANs == nil {
		j.SANs = []string{}
	}
	if n := nixConstraints(c); n != nil {
		j.KeyName, j.Targets, j.Scope = n.KeyName, n.Targets, n.Scope.String()
	}
	return j
}

func newCertListCmd() *cobra.Command {
	var cf caFlags
	var expiring time.Duration
	var asJSON, revoked bool
	var issuer string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued certificates (newest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openDB(cmd, cf.dir)
			if err != nil {
				return err
			}
			defer db.Close()
			f := store.CertFilter{Issuer: issuer, IncludeRevoked: revoked, Now: time.Now()}
			if expiring > 0 {
				f.ExpiringBefore = time.Now().Add(expiring)
			}
			certs, err := db.ListCerts(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				js := make([]certJSON, 0, len(certs))
				for _, c := range certs {
					js = append(js, toJSON(c))
				}
				return printJSON(out, js)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tISSUER\tSUBJECT\tNAMES\tNOT AFTER\tSTATUS")
			for _, c := range certs {
				status := "valid"
				if c.Revoked() {
					status = "revoked"
				} else if time.Now().After(c.NotAfter) {
					status = "expired"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(c.Serial), termSafe(c.Issuer), termSafe(c.Subject), termSafe(names(c)), c.NotAfter.Format(time.RFC3339), status)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&cf.dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().DurationVar(&expiring, "expiring", 0, "only certificates expiring within this duration (e.g. 720h)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&revoked, "revoked", false, "include revoked certificates")
	cmd.Flags().StringVar(&issuer, "issuer", "", "only certificates of this issuer: root, tls, nix")
	return cmd
}

func newCertShowCmd() *cobra.Command {
	var cf caFlags
	var asPEM bool
	cmd := &cobra.Command{
		Use:   "show SERIAL",
		Short: "Show one certificate's record (or its PEM with --pem)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serial, err := x509util.ParseSerial(args[0])
			if err != nil {
				return err
			}
			db, err := openDB(cmd, cf.dir)
			if err != nil {
				return err
			}
			defer db.Close()
			c, err := db.GetCert(cmd.Context(), serial)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("no certificate with serial %s was issued by this CA (see `nixpki cert list`)", strings.ToUpper(serial))
				}
				return err
			}
			if asPEM {
				_, err := cmd.OutOrStdout().Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER}))
				return err
			}
			return printJSON(cmd.OutOrStdout(), toJSON(c))
		},
	}
	cmd.Flags().StringVar(&cf.dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "print the certificate as PEM")
	return cmd
}

func newCertRevokeCmd() *cobra.Command {
	var cf caFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke SERIAL",
		Short: "Revoke a certificate; it shows in the CRL and OCSP at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := c.Revoke(cmd.Context(), args[0], code)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s (%s) at %s\n", strings.ToUpper(rec.Serial), termSafe(rec.Subject), rec.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, …")
	return cmd
}
