package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"nixpki/internal/push"
)

// pushFlags are what `nixpki nix push` takes.
type pushFlags struct {
	gate, cert, secret, caFile, compression string
	crls                                    []string
	noFetchCRL, viaNixCopy                  bool
	jobs, level                             int
}

func newNixPushCmd() *cobra.Command {
	var f pushFlags
	var copyTo string // --then-copy
	cmd := &cobra.Command{
		Use:   "push --gate URL --cert alice.crt --secret alice.sec [--crl F] PATH…",
		Short: "Upload your certificate chain and CRL to a gate, then sign and upload the closure of PATHs",
		Long: `Uploads the certificate chain and the newest CRL at hand to the gate (PUT /nixpki/certs),
failing early with the gate's reason if the certificate cannot sign for it (no narinfo
is sent before the gate took it); meanwhile uploads the closure of PATHs: for each
path the gate does not serve yet, the NAR (serialised as nix-store --dump does,
compressed) and a narinfo signed with your key, several uploads at a time, a path's
narinfo after its references' (as nix copy --to
'URL?secret-key=S&compression=C' would, which --via-nix-copy runs instead; bzip2 always
goes through nix copy). For each path the gate serves already, it sends the narinfo
again signed with your key (no NAR), so that your signature is recorded on the whole
closure: a path needing k signatures needs k signers on every path of its closure.
Unless the gate answered every narinfo "admitted", it then asks the gate which paths it
admitted. It fails if a path was rejected or waits as pending (for another member's
signature, say).

With --then-copy alice@host-a, a successful push is followed by what nixos-rebuild
--target-host alice@host-a --use-substitutes runs to copy a closure:
nix-copy-closure --to alice@host-a --use-substitutes PATH… (printed on stderr first;
NIX_SSHOPTS applies), so the target substitutes the closure from its gate.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("then-copy") {
				if err := checkCopyTarget(copyTo); err != nil {
					return err
				}
			}
			if err := f.run(cmd, args); err != nil || copyTo == "" {
				return err
			}
			return thenCopy(cmd.Context(), copyTo, args, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&copyTo, "then-copy", "", "after a successful push, copy the closure to [USER@]HOST as nixos-rebuild --use-substitutes does (nix-copy-closure --to HOST --use-substitutes PATH…)")
	cmd.Flags().StringVar(&f.gate, "gate", "", "the gate's URL, e.g. https://host-a:8501")
	cmd.Flags().StringVar(&f.cert, "cert", "", "your Nix certificate chain (PEM: leaf, Nix intermediate)")
	cmd.Flags().StringVar(&f.secret, "secret", "", "your Nix secret key (the certified one)")
	cmd.Flags().StringSliceVar(&f.crls, "crl", nil, "CRL file(s) to upload (DER or PEM, from nixpki nix crl); default: fetch the certificate's CRL distribution point")
	cmd.Flags().BoolVar(&f.noFetchCRL, "no-fetch-crl", false, "do not fetch the CRL from the certificate's distribution point")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "PEM root(s) to trust for the gate's HTTPS (e.g. the CA's root.crt); also given to nix as NIX_SSL_CERT_FILE")
	cmd.Flags().StringVar(&f.compression, "compression", "auto", "NAR compression: auto (zstd, but a NAR that looks incompressible, such as already-compressed data, goes uncompressed), zstd (such a NAR goes in raw zstd blocks), xz, bzip2 or none")
	cmd.Flags().IntVar(&f.level, "compression-level", push.DefaultZstdLevel, "zstd level for --compression auto and zstd, 1 to 22 as zstd counts; nixpki's encoder has four modes: 1–2 (fastest; 2 is the default, as cachix push), 3–5 (3 is Nix's default), 6–9 and 10–22 (smallest). --via-nix-copy gives the level to Nix's libzstd")
	cmd.Flags().IntVarP(&f.jobs, "jobs", "j", 16, "uploads in flight (at most one NAR per CPU is compressed at a time)")
	cmd.Flags().BoolVar(&f.viaNixCopy, "via-nix-copy", false, "upload with nix copy --to 'URL?secret-key=…' (one path at a time) instead of nixpki's own uploader")
	return cmd
}

func (f *pushFlags) run(cmd *cobra.Command, paths []string) error {
	if f.gate == "" || f.cert == "" || f.secret == "" {
		return errors.New("--gate, --cert and --secret are required")
	}
	switch f.compression {
	case "auto", "zstd", "xz", "bzip2", "none":
	default:
		return fmt.Errorf("--compression %q: use auto, zstd, xz, bzip2 or none", f.compression)
	}
	if f.level < 1 || f.level > 22 {
		return fmt.Errorf("--compression-level %d: zstd levels are 1 (fastest) to 22 (smallest)", f.level)
	}
	if cmd.Flags().Changed("compression-level") && f.compression != "auto" && f.compression != "zstd" {
		return fmt.Errorf("--compression-level is a zstd level: use it with --compression auto or zstd, not %s", f.compression)
	}
	return push.Run(cmd.Context(), push.Options{
		Gate: f.gate, Cert: f.cert, Secret: f.secret, CAFile: f.caFile,
		Compression: f.compression, Level: f.level, CRLs: f.crls,
		NoFetchCRL: f.noFetchCRL, ViaNixCopy: f.viaNixCopy, Jobs: f.jobs,
		Stderr: cmd.ErrOrStderr(),
	}, paths)
}
