package main

import (
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/enroll"
	"nixpki/internal/keys"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

func newNixCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "nix",
		Short: "Nix signing keys and the certificates that make a member's own key trusted (docs/nix-certificates.md)",
	}
	key := &cobra.Command{Use: "key", Short: "Nix signing keys, in the format of nix-store --generate-binary-cache-key"}
	key.AddCommand(newNixKeyGenerateCmd(), newNixKeyPublicCmd())
	token := &cobra.Command{Use: "token", Short: "One-time enrollment tokens"}
	token.AddCommand(newNixTokenCreateCmd(), newNixTokenListCmd())
	cmd.AddCommand(key, newNixCertifyCmd(), token, newNixEnrollCmd(), newNixRenewCmd(),
		newNixRevokeCmd(), newNixCRLCmd(), newNixAttemptsCmd())
	cmd.AddCommand(newNixPushCmd())
	return cmd
}

func newNixKeyGenerateCmd() *cobra.Command {
	var name, outSecret, outPublic string
	cmd := &cobra.Command{
		Use:   "generate --name NAME --out-secret F --out-public F",
		Short: "Generate a Nix signing key (byte for byte what nix-store --generate-binary-cache-key writes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || outSecret == "" || outPublic == "" {
				return errors.New("--name, --out-secret and --out-public are required")
			}
			pub, err := generateNixKey(name, outSecret, outPublic)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", pub)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "key name, e.g. alice-1 (signatures read alice-1:…); use <subject> or <subject>-<suffix>")
	cmd.Flags().StringVar(&outSecret, "out-secret", "", "where to write the secret key (mode 0600)")
	cmd.Flags().StringVar(&outPublic, "out-public", "", "where to write the public key")
	return cmd
}

func newNixKeyPublicCmd() *cobra.Command {
	var secret string
	cmd := &cobra.Command{
		Use:   "public --secret F",
		Short: "Print the public key of a secret key (like nix key convert-secret-to-public)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := readSecretKey(secret)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), k.Public())
			return nil
		},
	}
	cmd.Flags().StringVar(&secret, "secret", "", "secret key file")
	return cmd
}

func readSecretKey(path string) (signing.SecretKey, error) {
	if path == "" {
		return signing.SecretKey{}, errors.New("--secret is required")
	}
	return signing.ReadSecretKeyFile(path)
}

// generateNixKey writes a new Nix signing key (the secret 0600), never over existing
// files, and returns the public key.
func generateNixKey(name, outSecret, outPublic string) (string, error) {
	if _, err := os.Lstat(outPublic); err == nil {
		return "", fmt.Errorf("%s already exists: refusing to overwrite it", outPublic)
	}
	k, err := signing.GenerateKey(name)
	if err != nil {
		return "", err
	}
	sec, err := k.MarshalText()
	if err != nil {
		return "", err
	}
	pub, err := k.Public().MarshalText()
	if err != nil {
		return "", err
	}
	if err := writePrivate(outSecret, sec); err != nil {
		return "", err
	}
	return string(pub), writeNew(outPublic, pub, 0o644)
}

// writePrivate writes a secret 0600, never over an existing file.
func writePrivate(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists: refusing to overwrite a secret", path)
	}
	return writeNew(path, data, 0o600)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// constraintFlags are the certificate's constraints as an admin gives them.
type constraintFlags struct {
	subject string
	targets []string
	scope   string
	valid   time.Duration
}

func (f *constraintFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.subject, "subject", "", "the member or builder the key belongs to, e.g. alice")
	cmd.Flags().StringSliceVar(&f.targets, "targets", nil, "gates/machines that may accept it: names or glob patterns, comma-separated (e.g. 'lab-*')")
	cmd.Flags().StringVar(&f.scope, "scope", "any", "store paths it may vouch for: any, content-addressed, or store-path name patterns (e.g. 'myapp-*')")
	cmd.Flags().DurationVar(&f.valid, "valid", 0, "certificate validity (default nix.default_validity, 168h; at most nix.max_validity)")
}

func (f *constraintFlags) parse() ([]string, nixcert.Scope, error) {
	if f.subject == "" {
		return nil, nixcert.Scope{}, errors.New("--subject is required")
	}
	targets, err := nixcert.ParseTargets(f.targets)
	if err != nil {
		return nil, nixcert.Scope{}, err
	}
	scope, err := nixcert.ParseScope(f.scope)
	return targets, scope, err
}

func newNixCertifyCmd() *cobra.Command {
	var cf caFlags
	var f constraintFlags
	var public, out, requester string
	cmd := &cobra.Command{
		Use:   "certify --public alice.pub --subject alice --targets 'lab-*' --out alice.crt",
		Short: "Certify a member's Nix public key offline (admin); writes the certificate and the Nix intermediate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if public == "" || out == "" {
				return errors.New("--public and --out are required")
			}
			targets, scope, err := f.parse()
			if err != nil {
				return err
			}
			pub, err := os.ReadFile(public)
			if err != nil {
				return err
			}
			if _, err := os.Lstat(out); err == nil {
				return fmt.Errorf("%s already exists: refusing to overwrite it", out)
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a := enroll.NewAuthority(c)
			iss, err := a.Certify(cmd.Context(), enroll.CertifyRequest{PublicKey: pub, Subject: f.subject, Targets: targets, Scope: scope, Validity: f.valid, Requester: requester})
			if err != nil {
				return fmt.Errorf("%s: %w", public, err)
			}
			if err := writeNew(out, iss.ChainPEM(), 0o644); err != nil {
				return err
			}
			printIssued(cmd, iss.Notes, x509util.SerialHex(iss.Cert.SerialNumber), iss.Cert.NotAfter, f.subject, out)
			return nil
		},
	}
	cf.register(cmd)
	f.register(cmd)
	cmd.Flags().StringVar(&public, "public", "", "the member's Nix public key file (NAME:base64)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the certificate chain (PEM: leaf, Nix intermediate)")
	cmd.Flags().StringVar(&requester, "requester", currentUser(), "who certifies, recorded with the attempt")
	return cmd
}

func printIssued(cmd *cobra.Command, notes []string, serialHex string, notAfter time.Time, subject, out string) {
	for _, n := range notes {
		fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Issued %s for %s, valid until %s, written to %s\n", strings.ToUpper(serialHex), subject, notAfter.UTC().Format(time.RFC3339), out)
}

func newNixTokenCreateCmd() *cobra.Command {
	var cf caFlags
	var f constraintFlags
	var ttl time.Duration
	var keyName, requester string
	cmd := &cobra.Command{
		Use:   "create --subject alice --targets 'lab-*' [--ttl 15m]",
		Short: "Create a single-use enrollment token bound to a subject, targets and scope; prints it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			targets, scope, err := f.parse()
			if err != nil {
				return err
			}
			if ttl < 0 {
				return errors.New("--ttl must be positive")
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			tok, rec, err := enroll.NewAuthority(c).CreateToken(cmd.Context(), enroll.TokenRequest{
				Subject: f.subject, KeyName: keyName, Targets: targets, Scope: scope, Validity: f.valid, TTL: ttl, CreatedBy: requester,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %s for %s (targets %s, scope %s, certificate validity %s), usable once until %s\n",
				rec.ID, rec.Subject, strings.Join(rec.Targets, ","), rec.Scope, rec.Validity, rec.ExpiresAt.Format(time.RFC3339))
			return nil
		},
	}
	cf.register(cmd)
	f.register(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the token may be used (default nix.token_ttl, 15m)")
	cmd.Flags().StringVar(&keyName, "key-name", "", "only certify a key of this name (default: any <subject> or <subject>-<suffix>)")
	cmd.Flags().StringVar(&requester, "requester", currentUser(), "who creates the token, recorded")
	return cmd
}

func newNixTokenListCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List enrollment tokens (never the tokens themselves, which are not stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openDB(cmd, dir)
			if err != nil {
				return err
			}
			defer db.Close()
			toks, err := db.ListNixTokens(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSUBJECT\tTARGETS\tSCOPE\tEXPIRES\tSTATUS")
			for _, t := range toks {
				status := "unused"
				switch {
				case t.UsedAt != nil:
					status = "used " + strings.ToUpper(t.UsedSerial)
				case time.Now().After(t.ExpiresAt):
					status = "expired"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", termSafe(t.ID), termSafe(t.Subject), termSafe(strings.Join(t.Targets, ",")), termSafe(t.Scope), t.ExpiresAt.Format(time.RFC3339), termSafe(status))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	return cmd
}

// memberFlags are what a member gives to reach the CA.
type memberFlags struct {
	caURL, root, secret string
	subject             string
	valid               time.Duration
}

func (f *memberFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.caURL, "ca", "", "the CA's HTTPS URL, e.g. https://ca.internal:8443")
	cmd.Flags().StringVar(&f.root, "root", "", "the CA's root certificate (root.crt), the only trust for the connection")
	cmd.Flags().StringVar(&f.secret, "secret", "", "your Nix secret key (from nixpki nix key generate or nix-store --generate-binary-cache-key)")
	cmd.Flags().StringVar(&f.subject, "subject", "", "the subject you expect to be certified as (checked by the CA)")
	cmd.Flags().DurationVar(&f.valid, "valid", 0, "ask for a shorter validity than the default")
}

func (f *memberFlags) client() (*enroll.Client, signing.SecretKey, error) {
	if f.caURL == "" || f.root == "" {
		return nil, signing.SecretKey{}, errors.New("--ca and --root are required")
	}
	if !strings.HasPrefix(f.caURL, "https://") {
		return nil, signing.SecretKey{}, fmt.Errorf("--ca %s: use the CA's https:// URL", f.caURL)
	}
	root, err := x509util.ReadCertFile(f.root)
	if err != nil {
		return nil, signing.SecretKey{}, err
	}
	sec, err := readSecretKey(f.secret)
	if err != nil {
		return nil, signing.SecretKey{}, err
	}
	return enroll.NewClient(f.caURL, root), sec, nil
}

func newNixEnrollCmd() *cobra.Command {
	var f memberFlags
	var token, tokenFile, sshKey, sshCert, out string
	var useAgent bool
	cmd := &cobra.Command{
		Use:   "enroll --ca URL --root root.crt --secret alice.sec (--token T | --ssh-key ~/.ssh/id_ed25519 | --ssh-agent) --out alice.crt",
		Short: "Get your Nix key certified online, with a one-time token or an SSH user certificate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if tokenFile != "" {
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return err
				}
				token = strings.TrimSpace(string(b))
			}
			n := 0
			for _, set := range []bool{token != "", sshKey != "", useAgent} {
				if set {
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of --token/--token-file, --ssh-key or --ssh-agent")
			}
			client, sec, err := f.client()
			if err != nil {
				return err
			}
			opts := enroll.EnrollOptions{Subject: f.subject, Validity: f.valid}
			var got *enroll.Enrolled
			switch {
			case token != "":
				got, err = client.EnrollToken(cmd.Context(), sec, token, opts)
			default:
				var signer ssh.Signer
				if useAgent {
					var closeAgent func() error
					signer, closeAgent, err = enroll.AgentSSHSigner(sshCert)
					if err != nil {
						return err
					}
					defer closeAgent()
				} else if signer, err = enroll.LoadSSHSigner(sshKey, sshCert); err != nil {
					return err
				}
				got, err = client.EnrollSSH(cmd.Context(), sec, signer, opts)
			}
			if err != nil {
				return err
			}
			return writeEnrolled(cmd, got, out)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&token, "token", "", "one-time token from nixpki nix token create")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the token from a file instead (keeps it out of shell history)")
	cmd.Flags().StringVar(&sshKey, "ssh-key", "", "SSH private key whose certificate (<key>-cert.pub) the team's SSH user CA signed")
	cmd.Flags().StringVar(&sshCert, "ssh-cert", "", "the SSH certificate, if not <key>-cert.pub (with --ssh-agent: which certificate to use)")
	cmd.Flags().BoolVar(&useAgent, "ssh-agent", false, "sign with the ssh-agent at $SSH_AUTH_SOCK")
	cmd.Flags().StringVar(&out, "out", "", "where to write the certificate chain (PEM: leaf, Nix intermediate)")
	return cmd
}

func writeEnrolled(cmd *cobra.Command, got *enroll.Enrolled, out string) error {
	if err := keys.ReplaceFile(out, got.ChainPEM(), 0o644); err != nil {
		return err
	}
	id := got.Identity
	printIssued(cmd, nil, id.Serial(), id.Cert.NotAfter, id.Constraints.Subject, out)
	fmt.Fprintf(cmd.OutOrStdout(), "Key %s, targets %s, scope %s\n", id.Key.Name, strings.Join(id.Constraints.Targets, ","), id.Constraints.Scope)
	return nil
}

func newNixRenewCmd() *cobra.Command {
	var f memberFlags
	var certFile, out string
	cmd := &cobra.Command{
		Use:   "renew --ca URL --root root.crt --secret alice.sec --cert alice.crt [--out F]",
		Short: "Renew a valid certificate for the same key (within nix.renew_max_age of the last token or SSH enrollment)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" {
				return errors.New("--cert is required")
			}
			if out == "" {
				out = certFile
			}
			data, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			chain, err := nixcert.ParseChainPEM(data)
			if err != nil {
				return fmt.Errorf("%s: %w", certFile, err)
			}
			client, sec, err := f.client()
			if err != nil {
				return err
			}
			got, err := client.Renew(cmd.Context(), sec, chain, enroll.EnrollOptions{Subject: f.subject, Validity: f.valid})
			if err != nil {
				return err
			}
			return writeEnrolled(cmd, got, out)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&certFile, "cert", "", "your current certificate chain")
	cmd.Flags().StringVar(&out, "out", "", "where to write the new chain (default: replace --cert)")
	return cmd
}

func newNixRevokeCmd() *cobra.Command {
	var cf caFlags
	var subject, reason string
	cmd := &cobra.Command{
		Use:   "revoke [SERIAL] [--subject alice]",
		Short: "Revoke a Nix certificate, or every certificate of a subject; it shows in the Nix CRL at once",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (subject != "") {
				return errors.New("give a SERIAL or --subject, not both or neither")
			}
			code, err := ca.ParseReason(reason)
			if err != nil {
				return err
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			a := enroll.NewAuthority(c)
			if subject != "" {
				recs, err := a.RevokeSubject(cmd.Context(), subject, code)
				for _, rec := range recs {
					printRevoked(cmd, rec)
				}
				return err
			}
			recs, err := a.Revoke(cmd.Context(), args[0], code)
			for _, rec := range recs {
				printRevoked(cmd, rec)
			}
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&subject, "subject", "", "revoke every unrevoked certificate of this subject")
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "RFC 5280 reason: keyCompromise, affiliationChanged, superseded, …")
	return cmd
}

func printRevoked(cmd *cobra.Command, rec *store.Cert) {
	fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s (%s) at %s\n", strings.ToUpper(rec.Serial), termSafe(rec.Subject), rec.RevokedAt.Format(time.RFC3339))
}

func newNixCRLCmd() *cobra.Command {
	var cf caFlags
	var out, rootKey string
	var asPEM, root bool
	cmd := &cobra.Command{
		Use:   "crl --out F [--root [--root-key K]]",
		Short: "Export the Nix-signing intermediate's signed CRL (DER) to carry to offline machines; --root: the root's CRL of revoked intermediates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required (- for stdout)")
			}
			c, err := cf.open(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			var der []byte
			if root {
				if rootKey == "" {
					rootKey = ca.KeyPath(c.Dir, ca.IssuerRoot)
				}
				pwFile := cf.passwordFile
				if pwFile == "" {
					pwFile = config.Resolve(c.Dir, c.Config.PasswordFile)
				}
				password, err := keys.ReadPassword(pwFile)
				if err != nil {
					return err
				}
				if _, err := os.Stat(rootKey); errors.Is(err, os.ErrNotExist) {
					how := "pass it with --root-key K"
					if c.Config.OfflineRoot {
						how = "this CA was made with --offline-root: bring the root key carried away at init and pass it with --root-key K"
					}
					return fmt.Errorf("the root's CRL is signed with the root key, expected at %s, which does not exist: %s (encrypted with the CA's password, or give --password-file)", rootKey, how)
				}
				signer, err := keys.LoadSigner(rootKey, password)
				if err != nil {
					return fmt.Errorf("the root key (--root-key): %w", err)
				}
				der, err = c.RootCRL(cmd.Context(), signer)
				if err != nil {
					return err
				}
			} else if der, err = enroll.NewAuthority(c).CRL(cmd.Context()); err != nil {
				return err
			}
			data := der
			if asPEM {
				data = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(data)
				return err
			}
			if err := keys.ReplaceFile(out, data, 0o644); err != nil {
				return err
			}
			what := "the Nix CRL"
			if root {
				what = "the root's CRL (revoked intermediates)"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s to %s\n", what, out)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "where to write the CRL (- for stdout)")
	cmd.Flags().BoolVar(&asPEM, "pem", false, "write PEM instead of DER")
	cmd.Flags().BoolVar(&root, "root", false, "build the root's CRL of revoked intermediates instead (signed with the root key)")
	cmd.Flags().StringVar(&rootKey, "root-key", "", "the root key (encrypted PEM, the CA's password) for --root (default: the online one in --dir)")
	return cmd
}

func newNixAttemptsCmd() *cobra.Command {
	var dir string
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "attempts",
		Short: "List Nix certificate issuance attempts, issued and refused, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openDB(cmd, dir)
			if err != nil {
				return err
			}
			defer db.Close()
			as, err := db.ListNixAttempts(cmd.Context(), limit)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				js := make([]attemptJSON, 0, len(as))
				for _, a := range as {
					js = append(js, attemptJSON{a.At, a.Method, a.Outcome, a.Reason, a.Subject, a.KeyName, a.KeyFingerprint, a.Remote, a.TokenID, a.SSHIdentity, strings.ToUpper(a.Serial)})
				}
				return printJSON(w, js)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tMETHOD\tOUTCOME\tSUBJECT\tKEY\tSERIAL\tREASON")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.At.Format(time.RFC3339), termSafe(a.Method), termSafe(a.Outcome), termSafe(a.Subject), termSafe(a.KeyName), termSafe(strings.ToUpper(a.Serial)), termSafe(a.Reason))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// The attempt log is bounded (nix.attempts_max, nix.attempts_max_age).
			if dropped, err := db.NixCounter(cmd.Context(), store.NixAttemptsDropped); err == nil && dropped > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d older attempts were dropped by nix.attempts_max / nix.attempts_max_age\n", dropped)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().IntVar(&limit, "limit", 50, "how many (0 = all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// attemptJSON is the --json shape of an issuance attempt.
type attemptJSON struct {
	At             time.Time `json:"at"`
	Method         string    `json:"method"`
	Outcome        string    `json:"outcome"`
	Reason         string    `json:"reason,omitempty"`
	Subject        string    `json:"subject"`
	KeyName        string    `json:"key_name"`
	KeyFingerprint string    `json:"key,omitempty"`
	Remote         string    `json:"remote"`
	TokenID        string    `json:"token_id,omitempty"`
	SSHIdentity    string    `json:"ssh_identity,omitempty"`
	Serial         string    `json:"serial,omitempty"`
}
