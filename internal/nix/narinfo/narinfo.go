// Package narinfo parses and renders the .narinfo files of a binary cache.
package narinfo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"nixpki/internal/nix/contentaddress"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// MaxSize bounds the narinfo files Parse reads. Real ones are a
// few hundred bytes; 1 MiB leaves room for about 15,000 references.
const MaxSize = 1 << 20

// NarInfo is a binary cache's description of one store path (a .narinfo
// file).
type NarInfo struct {
	StorePath   string    // full store path
	URL         string    // NAR location, relative to the cache
	Compression string    // "xz", "zstd", "none", …; Nix means "bzip2" when absent
	FileHash    *[32]byte // sha256 of the (compressed) file at URL; nil if absent
	FileSize    uint64    // size of the file at URL; 0 if absent
	NarHash     [32]byte  // sha256 of the uncompressed NAR
	NarSize     uint64    // size of the uncompressed NAR, non-zero
	References  []string  // base names, sorted, unique (may include the path itself)
	Deriver     string    // base name of the .drv, or "" if unknown
	Sigs        []signing.Signature
	CA          string // content address in Nix's canonical rendering, or ""

	// Extra holds lines with keys this package does not interpret (Nix
	// ignores them, e.g. System), in file order. MarshalText writes them
	// after the fields Nix writes.
	Extra []Field
}

// Field is one "Key: value" line.
type Field struct {
	Key, Value string
}

// Parse reads and parses a narinfo file for a store in storeDir
// (usually DefaultStoreDir). It accepts what Nix 2.8 accepts with the same
// meaning, and is stricter where Nix's reading is loose:
//
//   - every line is "Key: value" ending in '\n' (Nix needs the final newline
//     too); no control characters, no carriage returns;
//   - StorePath, URL, NarHash and a non-zero NarSize are required, as in Nix;
//   - keys other than Sig may appear only once (Nix lets later lines win);
//   - hashes may be in any notation Nix accepts but must be sha256;
//   - References and Deriver must be valid base names ("unknown-deriver"
//     means none, as in Nix); duplicate references are rejected;
//   - Sig lines must be well-formed signatures (Nix ignores bad ones when
//     verifying); duplicates are dropped, as Nix keeps a set;
//   - CA must parse as a content address; it is stored canonicalised.
//
// Input longer than MaxSize is rejected without reading further.
func Parse(r io.Reader, storeDir string) (*NarInfo, error) {
	if err := storepath.ValidateStoreDir(storeDir); err != nil {
		return nil, fmt.Errorf("narinfo: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("narinfo: reading: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("narinfo: larger than %d bytes", MaxSize)
	}
	return parseNarInfo(data, storeDir)
}

// narinfoKeyOK reports whether key is a plausible narinfo key: non-empty,
// printable ASCII without spaces.
func narinfoKeyOK(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// narinfoValueOK reports whether v is free of control characters (tabs,
// carriage returns, NUL, DEL, newlines).
func narinfoValueOK(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func parseNarInfo(data []byte, storeDir string) (*NarInfo, error) {
	ni := &NarInfo{}
	seen := map[string]bool{}
	sigSeen := map[string]bool{}
	var haveNarHash, haveNarSize bool
	lineNo := 0
	for len(data) > 0 {
		lineNo++
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("narinfo line %d: missing final newline", lineNo)
		}
		line := string(data[:nl])
		data = data[nl+1:]
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("narinfo line %d: %.80q is not \"Key: value\"", lineNo, line)
		}
		if !narinfoKeyOK(key) {
			return nil, fmt.Errorf("narinfo line %d: invalid key %.80q", lineNo, key)
		}
		if !narinfoValueOK(value) {
			return nil, fmt.Errorf("narinfo line %d: %s value contains a control character", lineNo, key)
		}
		if key != "Sig" {
			if seen[key] {
				return nil, fmt.Errorf("narinfo line %d: duplicate %s", lineNo, key)
			}
			seen[key] = true
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("narinfo line %d: %s: %s", lineNo, key, fmt.Sprintf(format, args...))
		}
		switch key {
		case "StorePath":
			if _, err := storepath.Parse(storeDir, value); err != nil {
				return nil, fail("%v", err)
			}
			ni.StorePath = value
		case "URL":
			if value == "" || strings.ContainsAny(value, " ") {
				return nil, fail("%q must be non-empty and contain no spaces", value)
			}
			ni.URL = value
		case "Compression":
			if value == "" || strings.ContainsAny(value, " ") {
				return nil, fail("%q must be non-empty and contain no spaces", value)
			}
			ni.Compression = value
		case "FileHash":
			h, err := nixhash.ParseSHA256(value)
			if err != nil {
				return nil, fail("%v", err)
			}
			ni.FileHash = &h
		case "NarHash":
			h, err := nixhash.ParseSHA256(value)
			if err != nil {
				return nil, fail("%v", err)
			}
			ni.NarHash, haveNarHash = h, true
		case "FileSize", "NarSize":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return nil, fail("%q is not a decimal unsigned 64-bit integer", value)
			}
			if key == "FileSize" {
				ni.FileSize = n
			} else {
				ni.NarSize, haveNarSize = n, true
			}
		case "References":
			// Nix tokenises on ' ' only (runs of spaces are one separator).
			var refs []string
			for _, r := range strings.Split(value, " ") {
				if r == "" {
					continue
				}
				if err := storepath.ValidateBaseName(r); err != nil {
					return nil, fail("%v", err)
				}
				refs = append(refs, r)
			}
			slices.Sort(refs)
			if i := firstDup(refs); i >= 0 {
				return nil, fail("duplicate reference %q", refs[i])
			}
			ni.References = refs
		case "Deriver":
			if value != "unknown-deriver" {
				if err := storepath.ValidateBaseName(value); err != nil {
					return nil, fail("%v", err)
				}
				ni.Deriver = value
			}
		case "Sig":
			s, err := signing.ParseSignature(value)
			if err != nil {
				return nil, fail("%v", err)
			}
			if canon := s.String(); !sigSeen[canon] {
				sigSeen[canon] = true
				ni.Sigs = append(ni.Sigs, s)
			}
		case "CA":
			ca, err := contentaddress.Parse(value)
			if err != nil {
				return nil, fail("%v", err)
			}
			ni.CA = ca.String()
		default:
			ni.Extra = append(ni.Extra, Field{Key: key, Value: value})
		}
	}
	switch {
	case ni.StorePath == "":
		return nil, errors.New("narinfo: StorePath missing")
	case ni.URL == "":
		return nil, errors.New("narinfo: URL missing")
	case !haveNarHash:
		return nil, errors.New("narinfo: NarHash missing")
	case !haveNarSize || ni.NarSize == 0:
		return nil, errors.New("narinfo: NarSize missing or zero")
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	return ni, nil
}

// firstDup returns the index of the first element of sorted s equal to its
// predecessor, or -1.
func firstDup(s []string) int {
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return i
		}
	}
	return -1
}

// Validate checks that ni would be accepted by Parse once marshalled.
func (ni *NarInfo) Validate() error {
	_, err := ni.marshal()
	return err
}

// MarshalText renders ni exactly as Nix's NarInfo::to_string does: StorePath,
// URL, Compression, FileHash, FileSize, NarHash, NarSize, References (base
// names, sorted, space-separated; the line is written even when empty, as
// "References: "), Deriver, Sig lines sorted as strings, CA; then any Extra
// lines. FileHash and FileSize are left out when FileHash is nil (Nix always
// has one when writing). An empty Compression is written as "bzip2", which is
// what Nix reads an absent one as.
func (ni *NarInfo) MarshalText() ([]byte, error) {
	return ni.marshal()
}

func (ni *NarInfo) marshal() ([]byte, error) {
	if _, _, err := storepath.Split(ni.StorePath); err != nil {
		return nil, fmt.Errorf("narinfo: StorePath: %w", err)
	}
	bad := func(field, value string) error {
		return fmt.Errorf("narinfo: %s %q must be non-empty and contain no spaces or control characters", field, value)
	}
	if ni.URL == "" || strings.Contains(ni.URL, " ") || !narinfoValueOK(ni.URL) {
		return nil, bad("URL", ni.URL)
	}
	compression := ni.Compression
	if compression == "" {
		compression = "bzip2"
	}
	if strings.Contains(compression, " ") || !narinfoValueOK(compression) {
		return nil, bad("Compression", compression)
	}
	if ni.NarSize == 0 {
		return nil, errors.New("narinfo: NarSize is zero")
	}
	refs := slices.Clone(ni.References)
	for _, r := range refs {
		if err := storepath.ValidateBaseName(r); err != nil {
			return nil, fmt.Errorf("narinfo: References: %w", err)
		}
	}
	slices.Sort(refs)
	if i := firstDup(refs); i >= 0 {
		return nil, fmt.Errorf("narinfo: duplicate reference %q", refs[i])
	}
	if ni.Deriver != "" {
		if err := storepath.ValidateBaseName(ni.Deriver); err != nil {
			return nil, fmt.Errorf("narinfo: Deriver: %w", err)
		}
	}
	sigs := make([]string, 0, len(ni.Sigs))
	for _, s := range ni.Sigs {
		t, err := s.MarshalText()
		if err != nil {
			return nil, fmt.Errorf("narinfo: Sig: %w", err)
		}
		sigs = append(sigs, string(t))
	}
	slices.Sort(sigs)
	sigs = slices.Compact(sigs)
	ca := ""
	if ni.CA != "" {
		c, err := contentaddress.Parse(ni.CA)
		if err != nil {
			return nil, fmt.Errorf("narinfo: CA: %w", err)
		}
		ca = c.String()
	}
	extraSeen := map[string]bool{}
	for _, f := range ni.Extra {
		if !narinfoKeyOK(f.Key) || !narinfoValueOK(f.Value) || knownNarInfoKeys[f.Key] || extraSeen[f.Key] {
			return nil, fmt.Errorf("narinfo: invalid or repeated extra line %q: %q", f.Key, f.Value)
		}
		extraSeen[f.Key] = true
	}

	var b bytes.Buffer
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	line("StorePath", ni.StorePath)
	line("URL", ni.URL)
	line("Compression", compression)
	if ni.FileHash != nil {
		line("FileHash", nixhash.FormatSHA256(*ni.FileHash))
		line("FileSize", strconv.FormatUint(ni.FileSize, 10))
	} else if ni.FileSize != 0 {
		line("FileSize", strconv.FormatUint(ni.FileSize, 10))
	}
	line("NarHash", nixhash.FormatSHA256(ni.NarHash))
	line("NarSize", strconv.FormatUint(ni.NarSize, 10))
	line("References", strings.Join(refs, " "))
	if ni.Deriver != "" {
		line("Deriver", ni.Deriver)
	}
	for _, s := range sigs {
		line("Sig", s)
	}
	if ca != "" {
		line("CA", ca)
	}
	for _, f := range ni.Extra {
		line(f.Key, f.Value)
	}
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("narinfo: rendering is larger than %d bytes", MaxSize)
	}
	return b.Bytes(), nil
}

// knownNarInfoKeys are the keys Parse interprets; they cannot be
// Extra lines.
var knownNarInfoKeys = map[string]bool{
	"StorePath": true, "URL": true, "Compression": true, "FileHash": true,
	"FileSize": true, "NarHash": true, "NarSize": true, "References": true,
	"Deriver": true, "Sig": true, "CA": true,
}

// Fingerprint returns the message that signatures of ni's store path sign;
// see signing.Fingerprint.
func (ni *NarInfo) Fingerprint() (string, error) {
	return signing.Fingerprint(ni.StorePath, ni.NarHash, ni.NarSize, ni.References)
}

// ContentAddressed reports whether ni carries a content address (CA field).
// Whether the address really derives the store path is CheckContentAddress's
// business.
func (ni *NarInfo) ContentAddressed() bool { return ni.CA != "" }

// CheckContentAddress checks that ni's CA field re-derives its store path
// from the name and references, which is what lets Nix accept a
// content-addressed path without a signature. It does not look at the NAR:
// whoever fetches the NAR must still check NarHash (and, for flat and text
// addresses, the file's hash).
func (ni *NarInfo) CheckContentAddress() error {
	if ni.CA == "" {
		return fmt.Errorf("narinfo for %s has no CA field", ni.StorePath)
	}
	ca, err := contentaddress.Parse(ni.CA)
	if err != nil {
		return fmt.Errorf("narinfo for %s: CA: %w", ni.StorePath, err)
	}
	storeDir, base, err := storepath.Split(ni.StorePath)
	if err != nil {
		return fmt.Errorf("narinfo: StorePath: %w", err)
	}
	if ca.Method == contentaddress.FixedRecursive && ca.Algo == "sha256" && !bytes.Equal(ca.Digest, ni.NarHash[:]) {
		return fmt.Errorf("narinfo for %s: CA %s does not match NarHash %s", ni.StorePath, ni.CA, nixhash.FormatSHA256(ni.NarHash))
	}
	refs := make([]string, len(ni.References))
	for i, r := range ni.References {
		refs[i] = storeDir + "/" + r
	}
	want, err := contentaddress.StorePath(storeDir, storepath.NamePart(base), ca, ni.StorePath, refs)
	if err != nil {
		return fmt.Errorf("narinfo for %s: %w", ni.StorePath, err)
	}
	if want != ni.StorePath {
		return fmt.Errorf("narinfo for %s: CA %s with its references gives store path %s", ni.StorePath, ni.CA, want)
	}
	return nil
}
