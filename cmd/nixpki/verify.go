package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"nixpki/internal/gate"
	"nixpki/internal/verify"
)

type verifyFlags struct {
	store       string
	root        string
	certs       []string
	gate        string
	crls        []string
	trustedKeys []string
	sigsNeeded  int
	target      string
	noCRL       bool
	maxCRLAge   time.Duration
	noContents  bool
	recursive   bool
	all         bool
	json        bool
	jobs        int
}

func newVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify [--store DIR|URL] [--root root.crt] [--certs FILE|DIR]… [--gate G] [--crl F] [--trusted-key K]… [--sigs-needed N] [--no-contents] [-r] [--json] PATH…",
		Short: "Check store paths (or closures) for corruption and for signatures by keys the CA certified",
		Long: `Check store paths, like nix store verify, with the CA as the trust anchor.

Contents: each path's NAR hash is recomputed from the store (in parallel) and
compared with the recorded one. Trust: a path is trusted when signed by at least
--sigs-needed distinct identities (at least one): keys whose certificate
(--certs) chains to --root, has the Nix-signing usage, names this machine among
its targets (--target), is not revoked (a CRL from --crl or --gate is required,
unless --no-crl) and is valid now — or was when the gate's verified log (--gate) shows the path admitted with
that very signature — and whose scope covers the path; or plain --trusted-key
keys. A certified subject counts once, whatever keys it signed with.
Content-addressed paths are trusted by themselves. As in Nix, locally built
("ultimate") paths are trusted unsigned only when --sigs-needed is 0 (the
default).

--store is / (this machine's store, read from Nix's database read-only, no
daemon), a chroot store's root directory, or a binary cache URL (http://,
https://, file://).

Exit status, as nix store verify's: bit 1 some path is corrupt, bit 2 untrusted,
bit 4 an error (a missing path, an unreadable database, a malformed signature or
certificate); 1 alone also for a usage error, as in Nix.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !f.all {
				return fmt.Errorf("verify: no paths given (or use --all)")
			}
			if f.sigsNeeded < 0 {
				return fmt.Errorf("verify: --sigs-needed must not be negative")
			}
			if code := runVerify(cmd.Context(), f, args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.store, "store", "/", "a local store's root (/ or a chroot store's directory) or a binary cache URL")
	fl.StringVar(&f.root, "root", "", "the CA's root certificate (PEM); certificates must chain to it")
	fl.StringArrayVar(&f.certs, "certs", nil, "certificate chains of signing keys: PEM files, or directories of *.pem/*.crt (repeatable)")
	fl.StringVar(&f.gate, "gate", "", "a gate's directory: the certificates and CRLs uploaded to it, and its verified log of when paths were admitted under which certificate (its root is the default --root)")
	fl.StringArrayVar(&f.crls, "crl", nil, "CRL of the Nix intermediate, or the root's (revoked intermediates) (PEM or DER); with one, certificates of issuers without a CRL are refused (repeatable)")
	fl.StringArrayVar(&f.trustedKeys, "trusted-key", nil, "a plain trusted Nix public key NAME:base64, or a file of them (repeatable)")
	fl.IntVar(&f.sigsNeeded, "sigs-needed", 0, "distinct identities that must sign each path; above 0, locally built paths need signatures too")
	fl.StringVar(&f.target, "target", hostname(), "the machine the paths are for: a certificate counts only if its targets name it (default: this machine's hostname)")
	fl.BoolVar(&f.noCRL, "no-crl", false, "trust certificates without checking revocation (without it, an issuer with no CRL from --crl or --gate is not trusted)")
	fl.DurationVar(&f.maxCRLAge, "max-crl-age", 8*24*time.Hour, "refuse a CRL issued longer ago than this, as a gate's max_crl_age does (0: any age)")
	fl.BoolVar(&f.noContents, "no-contents", false, "do not hash the paths' contents")
	fl.BoolVarP(&f.recursive, "recursive", "r", false, "check the closures of the paths")
	fl.BoolVar(&f.all, "all", false, "check every valid path of a local store")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per path on stdout")
	fl.IntVarP(&f.jobs, "jobs", "j", 0, "paths checked in parallel (default: sixteen per core on CPUs with AVX-512, else one per core)")
	return cmd
}

// runVerify runs the check and returns the exit status.
func runVerify(ctx context.Context, f verifyFlags, args []string, stdout, stderr io.Writer) int {
	rep := &verify.Reporter{Stderr: stderr, TTY: isTerminal(stderr)}
	if f.json {
		rep.JSON = stdout
	}
	setupErr := false
	problem := func(format string, a ...any) {
		setupErr = true
		rep.Message("nixpki verify: "+format, a...)
	}
	policy := verify.LoadPolicy(verify.PolicyConfig{
		Root: f.root, Certs: f.certs, CRLs: f.crls, TrustedKeys: f.trustedKeys, Gate: f.gate, OpenGate: openGateDir,
		Target: f.target, NoCRL: f.noCRL, MaxCRLAge: f.maxCRLAge,
	}, func(err error) { problem("%v", err) }, func(err error) { rep.Message("nixpki verify: warning: %v", err) })

	st, err := openVerifyStore(ctx, f.store)
	if err != nil {
		rep.Message("nixpki verify: %v", err)
		return verify.ExitError
	}
	defer st.Close()

	progress := &verify.Progress{}
	rep.StartProgress(progress)
	sum, _ := verify.Run(ctx, verify.Options{
		Store: st, Args: args, All: f.all, Recursive: f.recursive, NoContents: f.noContents,
		SigsNeeded: f.sigsNeeded, Policy: policy, Jobs: f.jobs, Report: rep.Result, Progress: progress,
	})
	rep.StopProgress()
	rep.Summary(sum)
	code := sum.ExitCode()
	if err := rep.JSONError(); err != nil {
		problem("writing JSON: %v", err)
	}
	if setupErr {
		code |= verify.ExitError
	}
	return code
}

// openVerifyStore opens a local store (by its root) or a binary cache (by URL).
func openVerifyStore(ctx context.Context, s string) (verify.Store, error) {
	if verify.IsCacheURL(s) {
		return verify.OpenCache(ctx, s, nil)
	}
	if root, ok := strings.CutPrefix(s, "local?root="); ok {
		s = root
	} else if s == "local" || s == "auto" {
		s = "/"
	}
	if strings.Contains(s, "://") || strings.Contains(s, "?") {
		return nil, fmt.Errorf("--store %q: want a directory (a store's root) or an http://, https:// or file:// binary cache URL", s)
	}
	return verify.OpenLocalStore(ctx, s), nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// gateDir gives verify what it reads from a gate's data directory.
type gateDir string

func openGateDir(dir string) (verify.GateSource, error) { return gateDir(dir), nil }

func (d gateDir) Root() (*x509.Certificate, error) { return gate.ReadRoot(string(d)) }

func (d gateDir) Records() (intermediates, leaves []*x509.Certificate, crls [][]byte, err error) {
	return gate.Records(string(d))
}

func (d gateDir) Admissions() ([]verify.GateAdmission, error) {
	events, _, err := gate.Audit(string(d), "")
	if err != nil {
		return nil, err
	}
	var out []verify.GateAdmission
	for _, e := range events {
		if e.Type != "admission" {
			continue
		}
		for _, s := range e.Signers {
			out = append(out, verify.GateAdmission{Path: e.Path, Admission: verify.Admission{At: e.Time, CertSHA256: s.Cert, Sig: s.Sig, Entry: e.Entry}})
		}
	}
	return out, nil
}

// hostname is this machine's name, the default --target.
func hostname() string {
	h, _ := os.Hostname()
	return h
}
