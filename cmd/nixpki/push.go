package main

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"
	"github.com/ulikunitz/xz"

	"nixpki/internal/ca"
	"nixpki/internal/gate"
	"nixpki/internal/nixcert"
	"nixpki/internal/nixkey"
)

// pushFlags are what `nixpki nix push` takes.
type pushFlags struct {
	gate, cert, secret, caFile, compression string
	crls                                    []string
	noFetchCRL, viaNixCopy                  bool
	jobs                                    int
}

func newNixPushCmd() *cobra.Command {
	var f pushFlags
	cmd := &cobra.Command{
		Use:   "push --gate URL --cert alice.crt --secret alice.sec [--crl F] PATH…",
		Short: "Upload your certificate chain and CRL to a gate, then sign and upload the closure of PATHs",
		Long: `Uploads the certificate chain and the newest CRL at hand to the gate (PUT /nixpki/certs),
failing early with the gate's reason if the certificate cannot sign for it; then uploads
the closure of PATHs: for each path the gate does not serve yet, the NAR (serialised
as nix-store --dump does, compressed) and a narinfo signed with your key, several
uploads at a time, a path's narinfo after its references' (as nix copy --to
'URL?secret-key=S&compression=C' would, which --via-nix-copy runs instead; bzip2 always
goes through nix copy). For each path the gate serves already, it sends the narinfo
again signed with your key (no NAR), so that your signature is recorded on the whole
closure: a path needing k signatures needs k signers on every path of its closure.
Then it asks the gate which paths it admitted. It fails if a
path was rejected or waits as pending (for another member's signature, say).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return f.run(cmd, args) },
	}
	cmd.Flags().StringVar(&f.gate, "gate", "", "the gate's URL, e.g. https://host-a:8501")
	cmd.Flags().StringVar(&f.cert, "cert", "", "your Nix certificate chain (PEM: leaf, Nix intermediate)")
	cmd.Flags().StringVar(&f.secret, "secret", "", "your Nix secret key (the certified one)")
	cmd.Flags().StringSliceVar(&f.crls, "crl", nil, "CRL file(s) to upload (DER or PEM, from nixpki nix crl); default: fetch the certificate's CRL distribution point")
	cmd.Flags().BoolVar(&f.noFetchCRL, "no-fetch-crl", false, "do not fetch the CRL from the certificate's distribution point")
	cmd.Flags().StringVar(&f.caFile, "ca-file", "", "PEM root(s) to trust for the gate's HTTPS (e.g. the CA's root.crt); also given to nix as NIX_SSL_CERT_FILE")
	cmd.Flags().StringVar(&f.compression, "compression", "zstd", "NAR compression: zstd, xz, bzip2 or none")
	cmd.Flags().IntVarP(&f.jobs, "jobs", "j", 8, "uploads in flight")
	cmd.Flags().BoolVar(&f.viaNixCopy, "via-nix-copy", false, "upload with nix copy --to 'URL?secret-key=…' (one path at a time) instead of nixpki's own uploader")
	return cmd
}

func (f *pushFlags) run(cmd *cobra.Command, paths []string) error {
	if f.gate == "" || f.cert == "" || f.secret == "" {
		return errors.New("--gate, --cert and --secret are required")
	}
	switch f.compression {
	case "zstd", "xz", "bzip2", "none":
	default:
		return fmt.Errorf("--compression %q: use zstd, xz, bzip2 or none", f.compression)
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
	ctx := cmd.Context()

	// 1. Certificates and CRLs: self-authenticating, so the gate takes them from anyone.
	bundle := ca.ChainPEM(chain...)
	for _, c := range f.crls {
		der, err := readCRL(c)
		if err != nil {
			return err
		}
		bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	if len(f.crls) == 0 && !f.noFetchCRL {
		for _, u := range chain[0].CRLDistributionPoints {
			der, err := fetchCRL(ctx, client, u, 10*time.Second)
			if err != nil {
				say("warning: could not fetch the CRL %s (%v); the gate uses the newest one it holds", u, err)
				continue
			}
			bundle = append(bundle, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
		}
	}
	say("uploading certificate %s (%s, key %s) to %s", strings.ToUpper(id.Serial()), id.Constraints.Subject, id.Key.Name, gateURL)
	status, body, err := call(ctx, client, http.MethodPut, gateURL.String()+"/nixpki/certs", bundle)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		say("gate: %s", l)
	}
	if status != http.StatusOK {
		return fmt.Errorf("the gate refuses the certificate (HTTP %d): %s", status, strings.TrimSpace(body))
	}

	// 2. The closure, signed in the client and uploaded (by nixpki, or nix copy).
	var storePaths []string
	var copyErr error
	if f.viaNixCopy || f.compression == "bzip2" || f.jobs < 1 {
		infos, err := closureInfo(ctx, f.caFile, paths)
		if err != nil {
			return err
		}
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		// nix copy skips the paths the gate serves; they are signed again afterwards.
		up := &uploader{gate: gateURL.String(), client: client, sec: sec, compression: f.compression, say: say, resignOnly: true}
		if err := up.queryServed(ctx, infos); err != nil {
			return err
		}
		say("pushing the closure of %s with nix copy: %d paths, compression %s", strings.Join(paths, " "), len(storePaths), f.compression)
		abs, err := filepath.Abs(f.secret)
		if err != nil {
			return err
		}
		dest := gateURL.String() + "?secret-key=" + url.QueryEscape(abs) + "&compression=" + f.compression
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
		infos, err := closureInfo(ctx, f.caFile, paths)
		if err != nil {
			return err
		}
		for _, in := range infos {
			storePaths = append(storePaths, in.Path)
		}
		say("pushing the closure of %s: %d paths, compression %s, %d uploads at a time", strings.Join(paths, " "), len(storePaths), f.compression, f.jobs)
		up := &uploader{gate: gateURL.String(), client: client, sec: sec, compression: f.compression, say: say}
		copyErr = up.push(ctx, infos, f.jobs)
	}

	// 3. What the gate made of it.
	status, body, err = call(ctx, client, http.MethodPost, gateURL.String()+"/nixpki/status", []byte(strings.Join(storePaths, "\n")+"\n"))
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

func httpClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
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

// closureInfo returns the closure of paths, each path after its references.
func closureInfo(ctx context.Context, caFile string, paths []string) ([]pathInfo, error) {
	out, err := nixOutput(ctx, caFile, append([]string{"path-info", "--json", "-r"}, paths...)...)
	if err != nil {
		return nil, err
	}
	var infos []pathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, fmt.Errorf("nix path-info --json: %w", err)
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

// uploader pushes store paths to a gate as nix copy --to 'URL?secret-key=…' would:
// NAR first, then the signed narinfo, a path's narinfo only once its references'
// narinfos were answered (the gate admits a path only after its references).
// Several paths are in flight at once.
type uploader struct {
	gate        string
	client      *http.Client
	sec         nixkey.SecretKey
	compression string
	say         func(format string, args ...any)
	admitted    map[string]bool // paths the gate served when the push began
	resignOnly  bool            // only sign again the admitted paths (after nix copy)

	mu                          sync.Mutex
	uploaded, present, narsHeld int
	fileBytes                   int64
	refused                     int
}

// spillBuffer holds a compressed NAR in memory up to limit bytes, in a temporary
// file beyond: the client's memory does not grow with NAR size.
type spillBuffer struct {
	mem   []byte
	f     *os.File
	n     int64
	limit int
}

func (b *spillBuffer) Write(p []byte) (int, error) {
	if b.f == nil && len(b.mem)+len(p) <= b.limit {
		b.mem = append(b.mem, p...)
		b.n += int64(len(p))
		return len(p), nil
	}
	if b.f == nil {
		f, err := os.CreateTemp("", "nixpki-nar-*")
		if err != nil {
			return 0, err
		}
		os.Remove(f.Name()) // unlinked: gone when closed
		b.f = f
		if _, err := f.Write(b.mem); err != nil {
			return 0, err
		}
	}
	n, err := b.f.Write(p)
	b.n += int64(n)
	return n, err
}

func (b *spillBuffer) reader() io.Reader {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.n)
	}
	return bytes.NewReader(b.mem)
}

func (b *spillBuffer) reset() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.mem, b.n = b.mem[:0], 0
}

// bodyReader is a request body that says when the transport closed it (closing the
// underlying reader too: a pipe's writer then stops).
type bodyReader struct {
	r      io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *bodyReader) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bodyReader) Close() error {
	b.once.Do(func() {
		if c, ok := b.r.(io.Closer); ok {
			c.Close()
		}
		close(b.closed)
	})
	return nil
}

// countWriter counts bytes.
type countWriter struct{ n uint64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += uint64(len(p)); return len(p), nil }

// worker is one upload slot's reusable state.
type worker struct {
	buf spillBuffer
	zw  *zstd.Encoder
}

// queryServed asks the gate, in one status query, which paths it serves already.
func (u *uploader) queryServed(ctx context.Context, infos []pathInfo) error {
	var list strings.Builder
	for _, in := range infos {
		list.WriteString(in.Path + "\n")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.gate+"/nixpki/status", strings.NewReader(list.String()))
	if err != nil {
		return err
	}
	status, body, err := u.do(req, 4<<20)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("gate status (HTTP %d): %s", status, strings.TrimSpace(body))
	}
	u.admitted = map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		if p, ok := strings.CutPrefix(l, "admitted "); ok {
			u.admitted[p] = true
		}
	}
	return nil
}

func (u *uploader) push(ctx context.Context, infos []pathInfo, jobs int) error {
	if u.admitted == nil {
		if err := u.queryServed(ctx, infos); err != nil {
			return err
		}
	}
	done := make(map[string]chan struct{}, len(infos))
	for _, in := range infos {
		done[in.Path] = make(chan struct{})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	for range min(jobs, len(infos)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{buf: spillBuffer{limit: 8 << 20}}
			defer w.buf.reset()
			for i := range next {
				in := infos[i]
				err := u.pushOne(ctx, w, in, done)
				close(done[in.Path])
				if err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					u.say("%s: %v", in.Path, err)
				}
			}
		}()
	}
	// Paths go out in dependency order: a worker waiting for references only waits
	// for paths handed out earlier, which never wait for it.
	for i := range infos {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if u.resignOnly {
		u.say("signed again %d paths the gate served already (narinfo only)", u.present)
	}
	held := ""
	if u.narsHeld > 0 {
		held = fmt.Sprintf("; %d NARs the gate held already", u.narsHeld)
	}
	if !u.resignOnly {
		u.say("uploaded %d paths (%.1f MiB of %s NARs%s), %d already served by the gate (narinfo signed again, no NAR sent), %d answered otherwise than admitted",
			u.uploaded, float64(u.fileBytes)/(1<<20), u.compression, held, u.present, u.refused)
	}
	if len(errs) > 0 {
		return fmt.Errorf("uploading %d paths failed: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// pushOne uploads one path unless the gate serves it already; it returns an error
// only for a failure to talk to the gate or to read the store (the gate's verdicts
// are reported by the status query).
func (u *uploader) pushOne(ctx context.Context, w *worker, in pathInfo, done map[string]chan struct{}) error {
	// A pending or quarantined path is uploaded again so the gate merges the
	// signatures; for a path the gate serves, only the narinfo is sent again, signed
	// by this key (below), so that every path of the closure carries every pusher's
	// signature: a threshold holds for the whole closure of the path it protects.
	narHash, err := nixkey.ParseSHA256(in.NarHash)
	if err != nil {
		return fmt.Errorf("narHash: %w", err)
	}
	ni := &nixkey.NarInfo{StorePath: in.Path, Compression: u.compression, NarHash: narHash, NarSize: in.NarSize}
	for _, r := range in.References {
		ni.References = append(ni.References, filepath.Base(r))
	}
	if in.Deriver != "" {
		ni.Deriver = filepath.Base(in.Deriver)
	}
	if in.CA != "" {
		ca, err := nixkey.ParseContentAddress(in.CA)
		if err != nil {
			return err
		}
		ni.CA = ca.String()
	}
	for _, s := range in.Signatures {
		if sig, err := nixkey.ParseSignature(s); err == nil && sig.Name != u.sec.Name {
			ni.Sigs = append(ni.Sigs, sig)
		}
	}
	fp, err := ni.Fingerprint()
	if err != nil {
		return err
	}
	ni.Sigs = append(ni.Sigs, u.sec.Sign(fp))
	if u.admitted[in.Path] {
		return u.resign(ctx, ni, in, done)
	}
	if u.resignOnly {
		return nil
	}

	// The NAR file. Uncompressed, its name is the NarHash and it streams straight from
	// the store; compressed, its name is the hash of the compressed bytes, so it is
	// compressed (and hashed) first, into memory or a temporary file.
	var body func() io.Reader
	var size int64
	var fileHash [32]byte
	defer w.buf.reset()
	if u.compression == "none" {
		fileHash, size = narHash, int64(in.NarSize)
		body = func() io.Reader {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(dumpExactly(pw, in.Path, in.NarSize)) }()
			return pr
		}
	} else {
		h := sha256.New()
		out := io.MultiWriter(&w.buf, h)
		var zw io.WriteCloser
		switch u.compression {
		case "zstd":
			if w.zw == nil {
				if w.zw, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(8<<20),
					zstd.WithEncoderCRC(false)); err != nil { // as Nix (libarchive) writes zstd: no checksum; the gate checks the NarHash; err != nil {
					return err
				}
			}
			w.zw.Reset(out)
			zw = w.zw
		case "xz":
			if zw, err = (xz.WriterConfig{DictCap: 8 << 20}).NewWriter(out); err != nil {
				return err
			}
		default:
			return fmt.Errorf("compression %s: not supported by the uploader", u.compression)
		}
		if err := dumpExactly(zw, in.Path, in.NarSize); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		copy(fileHash[:], h.Sum(nil))
		size = w.buf.n
		body = w.buf.reader
	}
	ni.FileHash, ni.FileSize = &fileHash, uint64(size)
	ni.URL = gate.NARURL(fileHash, u.compression)
	// A NAR the gate holds already (staged, or for a pending path) need not come again.
	st, err := u.status(ctx, http.MethodHead, "/"+ni.URL)
	if err != nil {
		return err
	}
	if st == http.StatusOK {
		u.count(func() { u.narsHeld++ })
	} else {
		// The transport may still hold the body after Do returns (an early answer);
		// the buffer is reused, so wait until it closes the body.
		b := &bodyReader{r: body(), closed: make(chan struct{})}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.gate+"/"+ni.URL, b)
		if err != nil {
			b.Close()
			return err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/x-nix-nar")
		status, msg, err := u.do(req, 64<<10)
		<-b.closed
		if err != nil {
			return err
		}
		if status/100 != 2 {
			// The gate logged why; the narinfo would be rejected for the missing NAR.
			u.count(func() { u.refused++ })
			u.say("gate: %s", strings.TrimSpace(msg))
			return nil
		}
		u.count(func() { u.fileBytes += size })
	}
	status, msg, err := u.putNarInfo(ctx, ni, in, done)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		u.count(func() { u.refused++ })
		u.say("gate: %s", strings.TrimSpace(msg))
		return nil
	}
	u.count(func() { u.uploaded++ })
	return nil
}

// putNarInfo sends ni once the references of in were answered.
func (u *uploader) putNarInfo(ctx context.Context, ni *nixkey.NarInfo, in pathInfo, done map[string]chan struct{}) (int, string, error) {
	text, err := ni.MarshalText()
	if err != nil {
		return 0, "", err
	}
	for _, r := range in.References {
		if r == in.Path {
			continue
		}
		select {
		case <-done[r]:
		case <-ctx.Done():
			return 0, "", ctx.Err()
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.gate+"/"+nixkey.HashPart(in.Path)+".narinfo", bytes.NewReader(text))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/x-nix-narinfo")
	return u.do(req, 64<<10)
}

// resign sends again the narinfo of a path the gate serves, signed by this key, so
// that the gate records this identity's signature on it too. It names the NAR the
// gate serves (no NAR is uploaded). The gate refuses it if it serves other content.
func (u *uploader) resign(ctx context.Context, ni *nixkey.NarInfo, in pathInfo, done map[string]chan struct{}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.gate+"/"+nixkey.HashPart(in.Path)+".narinfo", nil)
	if err != nil {
		return err
	}
	status, body, err := u.do(req, 1<<20)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("the gate served it when the push began, now answers HTTP %d: %s", status, strings.TrimSpace(body))
	}
	served, err := nixkey.ParseNarInfo(strings.NewReader(body), filepath.Dir(in.Path))
	if err != nil {
		return fmt.Errorf("the gate's narinfo: %w", err)
	}
	if served.NarHash != ni.NarHash || served.NarSize != ni.NarSize {
		return fmt.Errorf("the gate serves other content for it (NarHash %s, %d bytes; the local store has %s, %d bytes)",
			nixkey.FormatSHA256(served.NarHash), served.NarSize, nixkey.FormatSHA256(ni.NarHash), ni.NarSize)
	}
	ni.URL, ni.Compression, ni.FileHash, ni.FileSize = served.URL, served.Compression, served.FileHash, served.FileSize
	status, msg, err := u.putNarInfo(ctx, ni, in, done)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		// The gate serves this path but refuses this signature on it: the closure
		// it serves is not the one signed here.
		u.count(func() { u.refused++ })
		return fmt.Errorf("the gate serves it but refuses this signature: %s", strings.TrimSpace(msg))
	}
	u.count(func() { u.present++ })
	return nil
}

// dumpExactly writes the NAR of path to w and checks its size against the store's
// database (the gate checks the hash).
func dumpExactly(w io.Writer, path string, narSize uint64) error {
	cw := &countWriter{}
	if err := nixkey.DumpPath(io.MultiWriter(w, cw), path); err != nil {
		return err
	}
	if cw.n != narSize {
		return fmt.Errorf("the NAR of %s is %d bytes, but the store's database says %d (the store path changed?)", path, cw.n, narSize)
	}
	return nil
}

func (u *uploader) count(f func()) {
	u.mu.Lock()
	f()
	u.mu.Unlock()
}

func (u *uploader) status(ctx context.Context, method, path string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.gate+path, nil)
	if err != nil {
		return 0, err
	}
	st, _, err := u.do(req, 64<<10)
	return st, err
}

func (u *uploader) do(req *http.Request, max int64) (int, string, error) {
	res, err := u.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("gate: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, max))
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(b), err
}
