// Package push is the uploader behind nixpki nix push: it sends a member's
// certificate chain and CRLs to a gate, then signs and uploads the closure of
// store paths (NARs streamed from the file system, compressed, several at a
// time, each narinfo after its references'), or has nix copy upload it, and
// reports what the gate admitted.
package push

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

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/x509util"
)

// Options are what a push takes: nixpki nix push's flags.
type Options struct {
	Gate        string   // the gate's base URL, http(s)://HOST:PORT
	Cert        string   // the member's certificate chain file (PEM: leaf, Nix intermediate)
	Secret      string   // the member's Nix secret key file
	CAFile      string   // PEM roots for the gate's HTTPS, also given to nix
	Compression string   // auto, zstd, xz, bzip2 or none
	Level       int      // zstd level, 1 to 22
	CRLs        []string // CRL files to upload
	NoFetchCRL  bool     // do not fetch the certificate's CRL distribution point
	ViaNixCopy  bool     // upload with nix copy instead of the uploader
	Jobs        int      // uploads in flight
	Stderr      io.Writer
}

// Run pushes the closure of paths to the gate as o says.
func Run(ctx context.Context, o Options, paths []string) error {
	if o.Gate == "" || o.Cert == "" || o.Secret == "" {
		return errors.New("--gate, --cert and --secret are required")
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	gateURL, err := url.Parse(strings.TrimRight(o.Gate, "/"))
	if err != nil || (gateURL.Scheme != "http" && gateURL.Scheme != "https") || gateURL.Host == "" || gateURL.RawQuery != "" {
		return fmt.Errorf("--gate %q: give the gate's base URL, http(s)://HOST:PORT", o.Gate)
	}
	stderr := o.Stderr
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "nixpki: "+format+"\n", args...) }

	sec, err := signing.ReadSecretKeyFile(o.Secret)
	if err != nil {
		return err
	}
	chainPEM, err := os.ReadFile(o.Cert)
	if err != nil {
		return err
	}
	chain, err := nixcert.ParseChainPEM(chainPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Cert, err)
	}
	id, err := nixcert.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("%s: %w", o.Cert, err)
	}
	if !id.Key.Equal(sec.Public()) {
		return fmt.Errorf("%s certifies key %s, but %s is key %s: push with the certified key", o.Cert, id.Key, o.Secret, sec.Public())
	}
	client, err := HTTPClient(o.CAFile)
	if err != nil {
		return err
	}
	cache, err := binarycache.New(gateURL.String(), client)
	if err != nil {
		return err
	}
	defer cache.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the closure's reading (and a nix path-info) on an early return
	// The closure is read while the certificate goes up.
	type closureResult struct {
		infos []pathInfo
		err   error
	}
	closureCh := make(chan closureResult, 1)
	go func() {
		infos, err := closureInfo(ctx, o.CAFile, paths)
		closureCh <- closureResult{infos, err}
	}()

	// 1. Certificates and CRLs: self-authenticating, so the gate takes them from anyone.
	// They go up while the closure is read and its NARs start to go up (a NAR is only
	// staged); no narinfo is sent before the gate took them (certsTaken).
	bundle := x509util.ChainPEM(chain...)
	for _, c := range o.CRLs {
		der, err := readCRL(c)
		if err != nil {
			return err
		}
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	certCh := make(chan error, 1)
	go func() {
		certCh <- o.uploadCerts(ctx, client, gateURL.String(), chain[0], id, bundle, say)
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
	if o.ViaNixCopy || o.Compression == "bzip2" || o.Jobs < 1 {
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		// nix copy skips the paths the gate serves; they are signed again afterwards.
		up := &uploader{cache: cache, sec: sec, compression: o.Compression, say: say, resignOnly: true}
		if err := up.queryServed(ctx, infos); err != nil {
			return err
		}
		if err := certsTaken(); err != nil { // nix copy sends narinfos
			return err
		}
		say("pushing the closure of %s with nix copy: %s, compression %s", strings.Join(paths, " "), count(len(storePaths), "path"), o.Compression)
		abs, err := filepath.Abs(o.Secret)
		if err != nil {
			return err
		}
		comp := o.Compression
		if comp == "auto" { // nix copy compresses every NAR alike
			comp = "zstd"
		}
		dest := gateURL.String() + "?secret-key=" + url.QueryEscape(abs) + "&compression=" + comp
		if comp == "zstd" {
			dest += "&compression-level=" + strconv.Itoa(o.Level)
		}
		copyArgs := append([]string{"copy", "--to", dest,
			// Ask the gate afresh: a pending path answers 404 and must be uploaded again.
			"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}, paths...)
		if err := nixRun(ctx, o.CAFile, stderr, copyArgs...); err != nil {
			copyErr = fmt.Errorf("nix copy failed: %w", err)
		}
		if len(up.admitted) > 0 {
			copyErr = errors.Join(copyErr, up.push(ctx, infos, max(o.Jobs, 1)))
		}
	} else {
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		comp := o.Compression
		if comp == "auto" || comp == "zstd" {
			comp += fmt.Sprintf(" (zstd level %d: the encoder's %s mode)", o.Level, zstd.EncoderLevelFromZstd(o.Level))
		}
		say("pushing the closure of %s: %s, compression %s, %d uploads at a time", strings.Join(paths, " "), count(len(storePaths), "path"), comp, o.Jobs)
		up := &uploader{cache: cache, sec: sec, compression: o.Compression, level: o.Level, say: say, certsTaken: certsTaken}
		copyErr = up.push(ctx, infos, o.Jobs)
		if err := certsTaken(); err != nil {
			return err
		}
		if copyErr == nil && up.uploaded+up.present == len(infos) {
			// Every narinfo was answered 200 (admitted): nothing to ask.
			say("%d of %s admitted by the gate", len(infos), count(len(infos), "path"))
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
	say("%d of %s admitted by the gate", admitted, count(len(storePaths), "path"))
	if copyErr != nil {
		return copyErr
	}
	if len(notAdmitted) > 0 {
		return fmt.Errorf("%s not admitted yet (see above)", count(len(notAdmitted), "path"))
	}
	return nil
}

// uploadCerts sends the certificate chain and CRLs (bundle, PEM) to the gate, with the
// CRL of the certificate's distribution point when no --crl was given.
func (o *Options) uploadCerts(ctx context.Context, client *http.Client, gateURL string, leaf *x509.Certificate, id *nixcert.Identity, bundle []byte, say func(string, ...any)) error {
	if len(o.CRLs) == 0 && !o.NoFetchCRL {
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

// HTTPClient is the client for a gate: TLS 1.2 or later, trusting the
// PEM roots in caFile besides the system's, with a connection per upload in
// flight.
func HTTPClient(caFile string) (*http.Client, error) {
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
	return &http.Client{Transport: tlsHint{&http.Transport{
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
	}}}, nil
}

// tlsHint adds the way out to the error of a gate whose certificate comes from a CA
// this machine does not trust.
type tlsHint struct{ http.RoundTripper }

func (t tlsHint) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.RoundTripper.RoundTrip(req)
	var unknown x509.UnknownAuthorityError
	if err != nil && errors.As(err, &unknown) {
		err = fmt.Errorf("%w (pass the CA's root with --ca-file root.crt, or add it to this machine's trusted roots)", err)
	}
	return res, err
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
		return nil, fmt.Errorf("not a DER CRL: %w", err)
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
		return nil, fmt.Errorf("%s: not a CRL: %w", path, err)
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
		return "", fmt.Errorf("nix %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return string(out), nil
}

func nixRun(ctx context.Context, caFile string, stderr io.Writer, args ...string) error {
	cmd := nixCommand(ctx, caFile, args...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	return cmd.Run()
}

// pathInfo is one entry of nix path-info --json.
type pathInfo = pathinfo.JSON

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

// count says "1 path", "2 paths".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
