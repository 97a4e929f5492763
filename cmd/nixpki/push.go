package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"nixpki/internal/nixcert"
	"nixpki/internal/x509util"
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
	cmd.Flags().IntVar(&f.level, "compression-level", defaultZstdLevel, "zstd level for --compression auto and zstd, 1 to 22 as zstd counts; nixpki's encoder has four modes: 1–2 (fastest; 2 is the default, as cachix push), 3–5 (3 is Nix's default), 6–9 and 10–22 (smallest). --via-nix-copy gives the level to Nix's libzstd")
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
	gateURL, err := url.Parse(strings.TrimRight(f.gate, "/"))
	if err != nil || (gateURL.Scheme != "http" && gateURL.Scheme != "https") || gateURL.Host == "" || gateURL.RawQuery != "" {
		return fmt.Errorf("--gate %q: give the gate's base URL, http(s)://HOST:PORT", f.gate)
	}
	stderr := cmd.ErrOrStderr()
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "nixpki: "+format+"\n", args...) }

	sec, err := readSecretKey(f.secret)
	if err != nil {
		return err
	}
	chainPEM, err := os.ReadFile(f.cert)
	if err != nil {
		return err
	}
	chain, err := nixcert.ParseChainPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", f.cert, err)
	}
	id, err := nixcert.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("%s: %w", f.cert, err)
	}
	if !id.Key.Equal(sec.Public()) {
		return fmt.Errorf("%s certifies key %s, but %s is key %s: push with the certified key", f.cert, id.Key, f.secret, sec.Public())
	}
	client, err := httpClient(f.caFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel() // stops the closure's reading (and a nix path-info) on an early return
	// The closure is read while the certificate goes up.
	type closureResult struct {
		infos []pathInfo
		err   error
	}
	closureCh := make(chan closureResult, 1)
	go func() {
		infos, err := closureInfo(ctx, f.caFile, paths)
		closureCh <- closureResult{infos, err}
	}()

	// 1. Certificates and CRLs: self-authenticating, so the gate takes them from anyone.
	// They go up while the closure is read and its NARs start to go up (a NAR is only
	// staged); no narinfo is sent before the gate took them (certsTaken).
	bundle := x509util.ChainPEM(chain...)
	for _, c := range f.crls {
		der, err := readCRL(c)
		if err != nil {
			return err
		}
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	certCh := make(chan error, 1)
	go func() {
		certCh <- f.uploadCerts(ctx, client, gateURL.String(), chain[0], id, bundle, say)
	}()
	certsTaken := sync.OnceValue(func() error {
		err := <-certCh
		if err != nil {
			cancel() // stops the uploads: the certificate's refusal is the answer
		}
		return err
	})

	// 2. The closure, signed in the client and uploaded (by nixpki, or nix copy).
	var storePaths []string
	var copyErr error
	cl := <-closureCh
	if cl.err != nil {
		return errors.Join(cl.err, certsTaken())
	}
	infos := cl.infos
	if f.viaNixCopy || f.compression == "bzip2" || f.jobs < 1 {
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		// nix copy skips the paths the gate serves; they are signed again afterwards.
		up := &uploader{gate: gateURL.String(), client: client, sec: sec, compression: f.compression, say: say, resignOnly: true}
		if err := up.queryServed(ctx, infos); err != nil {
			return err
		}
		if err := certsTaken(); err != nil { // nix copy sends narinfos
			return err
		}
		say("pushing the closure of %s with nix copy: %d paths, compression %s", strings.Join(paths, " "), len(storePaths), f.compression)
		abs, err := filepath.Abs(f.secret)
		if err != nil {
			return err
		}
		comp := f.compression
		if comp == "auto" { // nix copy compresses every NAR alike
			comp = "zstd"
		}
		dest := gateURL.String() + "?secret-key=" + url.QueryEscape(abs) + "&compression=" + comp
		if comp == "zstd" {
			dest += "&compression-level=" + strconv.Itoa(f.level)
		}
		copyArgs := append([]string{"copy", "--to", dest,
			// Ask the gate afresh: a pending path answers 404 and must be uploaded again.
			"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}, paths...)
		if err := nixRun(ctx, f.caFile, stderr, copyArgs...); err != nil {
			copyErr = fmt.Errorf("nix copy failed: %w", err)
		}
		if len(up.admitted) > 0 {
			copyErr = errors.Join(copyErr, up.push(ctx, infos, max(f.jobs, 1)))
		}
	} else {
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		comp := f.compression
		if comp == "auto" || comp == "zstd" {
			comp += fmt.Sprintf(" (zstd level %d: the encoder's %s mode)", f.level, zstd.EncoderLevelFromZstd(f.level))
		}
		say("pushing the closure of %s: %d paths, compression %s, %d uploads at a time", strings.Join(paths, " "), len(storePaths), comp, f.jobs)
		up := &uploader{gate: gateURL.String(), client: client, sec: sec, compression: f.compression, level: f.level, say: say, certsTaken: certsTaken}
		copyErr = up.push(ctx, infos, f.jobs)
		if err := certsTaken(); err != nil {
			return err
		}
		if copyErr == nil && up.uploaded+up.present == len(infos) {
			// Every narinfo was answered 200 (admitted): nothing to ask.
			say("%d of %d paths admitted by the gate", len(infos), len(infos))
			return nil
		}
	}

	// 3. What the gate made of it.
	status, body, err := call(ctx, client, http.MethodPost, gateURL.String()+"/nixpki/status", []byte(strings.Join(storePaths, "\n")+"\n"))
	if err != nil {
		return errors.Join(copyErr, err)
	}
	if status != http.StatusOK {
		return errors.Join(copyErr, fmt.Errorf("gate status (HTTP %d): %s", status, strings.TrimSpace(body)))
	}
	admitted, notAdmitted := 0, []string{}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if strings.HasPrefix(l, "admitted ") {
			admitted++
		} else if l != "" {
			notAdmitted = append(notAdmitted, l)
		}
	}
	for _, l := range notAdmitted {
		say("%s", l)
	}
	say("%d of %d paths admitted by the gate", admitted, len(storePaths))
	if copyErr != nil {
		return copyErr
	}
	if len(notAdmitted) > 0 {
		return fmt.Errorf("%d paths are not admitted yet (see above)", len(notAdmitted))
	}
	return nil
}

// uploadCerts sends the certificate chain and CRLs (bundle, PEM) to the gate, with the
// CRL of the certificate's distribution point when no --crl was given.
func (f *pushFlags) uploadCerts(ctx context.Context, client *http.Client, gateURL string, leaf *x509.Certificate, id *nixcert.Identity, bundle []byte, say func(string, ...any)) error {
	if len(f.crls) == 0 && !f.noFetchCRL {
		for _, u := range leaf.CRLDistributionPoints {
			der, err := fetchCRL(ctx, client, u, 10*time.Second)
			if err != nil {
				say("warning: could not fetch the CRL %s (%v); the gate uses the newest one it holds", u, err)
				continue
			}
			bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
		}
	}
	say("uploading certificate %s (%s, key %s) to %s", strings.ToUpper(id.Serial()), id.Constraints.Subject, id.Key.Name, gateURL)
	status, body, err := call(ctx, client, http.MethodPut, gateURL+"/nixpki/certs", bundle)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		say("gate: %s", l)
	}
	if status != http.StatusOK {
		return fmt.Errorf("the gate refuses the certificate (HTTP %d): %s", status, strings.TrimSpace(body))
	}
	return nil
}

func httpClient(caFile string) (*http.Client, error) {
	var pool *x509.CertPool // nil: the system's roots, loaded by the first TLS handshake
	if caFile != "" {
		var err error
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	// Uploads run in parallel: keep a connection per upload in flight. There is no
	// overall timeout (a NAR may take long); requests are bounded by the context and
	// by the transport's timeouts.
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost:   32,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		IdleConnTimeout:       90 * time.Second,
		// NAR uploads ask before sending (Expect: 100-continue): a gate holding the file
		// answers without it. A server that does not answer gets the body after 1 s.
		ExpectContinueTimeout: time.Second,
		// A NAR's body is sent chunked, a zstd block (up to 128 KiB) a chunk: with a
		// buffer that holds one, each chunk goes out in one write, not three.
		WriteBufferSize: 256 << 10,
	}}, nil
}

func call(ctx context.Context, c *http.Client, method, u string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-pem-file")
	res, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("gate: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	return res.StatusCode, string(b), err
}

func fetchCRL(ctx context.Context, c *http.Client, u string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", res.StatusCode)
	}
	der, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if _, err := x509.ParseRevocationList(der); err != nil {
		return nil, fmt.Errorf("not a DER CRL: %v", err)
	}
	return der, nil
}

// readCRL reads a CRL file in DER or PEM.
func readCRL(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	if _, err := x509.ParseRevocationList(data); err != nil {
		return nil, fmt.Errorf("%s: not a CRL: %v", path, err)
	}
	return data, nil
}

func nixCommand(ctx context.Context, caFile string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nix", append([]string{"--extra-experimental-features", "nix-command"}, args...)...)
	cmd.Env = os.Environ()
	if caFile != "" {
		abs, _ := filepath.Abs(caFile)
		cmd.Env = append(cmd.Env, "NIX_SSL_CERT_FILE="+abs)
	}
	return cmd
}

func nixOutput(ctx context.Context, caFile string, args ...string) (string, error) {
	cmd := nixCommand(ctx, caFile, args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("nix %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return string(out), nil
}

func nixRun(ctx context.Context, caFile string, stderr io.Writer, args ...string) error {
	cmd := nixCommand(ctx, caFile, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	return cmd.Run()
}

// pathInfo is one entry of nix path-info --json.
type pathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
	Signatures []string `json:"signatures"`
}

// closureInfo returns the closure of paths, each path after its references: read
// from the local Nix database (closureFromDB), or else from nix path-info.
func closureInfo(ctx context.Context, caFile string, paths []string) ([]pathInfo, error) {
	infos, err := closureFromDB(ctx, paths)
	if err != nil {
		out, err := nixOutput(ctx, caFile, append([]string{"path-info", "--json", "-r"}, paths...)...)
		if err != nil {
			return nil, err
		}
		infos = nil
		if err := json.Unmarshal([]byte(out), &infos); err != nil {
			return nil, fmt.Errorf("nix path-info --json: %w", err)
		}
	}
	byPath := make(map[string]*pathInfo, len(infos))
	for i := range infos {
		byPath[infos[i].Path] = &infos[i]
	}
	// Depth-first, references first; ties in nix's order.
	sorted := make([]pathInfo, 0, len(infos))
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p *pathInfo) error
	visit = func(p *pathInfo) error {
		switch state[p.Path] {
		case 1:
			return fmt.Errorf("%s: reference cycle", p.Path)
		case 2:
			return nil
		}
		state[p.Path] = 1
		for _, r := range p.References {
			if r == p.Path {
				continue
			}
			q := byPath[r]
			if q == nil {
				return fmt.Errorf("%s: reference %s is not in the closure nix path-info gave", p.Path, r)
			}
			if err := visit(q); err != nil {
				return err
			}
		}
		state[p.Path] = 2
		sorted = append(sorted, *p)
		return nil
	}
	for i := range infos {
		if err := visit(&infos[i]); err != nil {
			return nil, err
		}
	}
	return sorted, nil
}
