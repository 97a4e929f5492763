package gate

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"nixpki/internal/nix/binarycache"
	"nixpki/internal/testutil"
)

// xzParts splits a one-block xz stream into its stream header, block and
// index-and-footer.
func xzParts(t testing.TB, s []byte) (head, block, tail []byte) {
	t.Helper()
	back := int(binary.LittleEndian.Uint32(s[len(s)-8:])+1) * 4
	return s[:12], s[12 : len(s)-12-back], s[len(s)-12-back:]
}

// withDict rewrites the LZMA2 dictionary code of a block (a small one-filter block
// header as ulikunitz/xz writes it) and its header CRC.
func withDict(t testing.TB, block []byte, code byte) []byte {
	t.Helper()
	b := bytes.Clone(block)
	n := (int(b[0]) + 1) * 4
	i := bytes.Index(b[:n], []byte{0x21, 0x01})
	if i < 0 {
		t.Fatal("no LZMA2 filter in the block header")
	}
	b[i+2] = code
	binary.LittleEndian.PutUint32(b[n-4:], crc32.ChecksumIEEE(b[:n-4]))
	return b
}

// hugeDictXZ are xz files whose first block is sound and a later one declares a
// 1 GiB dictionary: in a second block of the stream, and in a second stream.
func hugeDictXZ(t testing.TB) map[string][]byte {
	nar := makeNAR(t, strings.Repeat("block ", 100))
	head, block, _ := xzParts(t, compress(t, nar, "xz"))
	one := compress(t, nar[:64], "xz")
	_, b1, _ := xzParts(t, one)
	// Block 2 of one stream: the file is cut after its header (the decoder must
	// refuse it before reading on).
	twoBlocks := append(append(bytes.Clone(head), b1...), withDict(t, block, 0x24)...)
	twoStreams := append(append(bytes.Clone(one), 0, 0, 0, 0), append(bytes.Clone(head), withDict(t, block, 0x24)...)...)
	return map[string][]byte{"second block": twoBlocks, "second stream": twoStreams}
}

// Every block header's dictionary is checked, not only the first one's.
func TestXZDictionaryEveryBlock(t *testing.T) {
	for name, data := range hugeDictXZ(t) {
		_, err := receiveNAR(bytes.NewReader(data), io.Discard, "xz", 1<<20, 64<<20)
		if err == nil || !strings.Contains(err.Error(), "declares a 1024 MiB dictionary, more than max_xz_dict (64 MiB)") {
			t.Errorf("%s: %v", name, err)
		}
	}
	tg := newTestGate(t, nil)
	data := hugeDictXZ(t)["second block"]
	if s, b := tg.do(t, "PUT", "/"+binarycache.NARURL(sha256.Sum256(data), "xz"), data); s != 400 || !strings.Contains(b, "block 2 declares a 1024 MiB dictionary") {
		t.Errorf("upload: %d %s", s, b)
	}
}

// Many tiny blocks each declaring max_xz_dict: the dictionaries allocated stay in
// proportion to the data decoded.
func TestXZDictionaryTotal(t *testing.T) {
	one := compress(t, []byte("tiny"), "xz")
	head, b, _ := xzParts(t, one)
	b = withDict(t, b, 28) // 64 MiB
	data := bytes.Clone(head)
	for range 3 {
		data = append(data, b...)
	}
	xr, err := newXZReader(bufioReader(data), 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, xr)
	if err == nil || !strings.Contains(err.Error(), "block 3: its dictionaries (192 MiB with this one's) are out of proportion to the 8 bytes decoded") {
		t.Fatalf("three tiny blocks of 64 MiB dictionaries: %v", err)
	}
}

// Files written by the xz tool (liblzma) in several blocks, with each check type,
// and concatenated streams with padding, decode to the NAR.
func TestXZReaderLiblzma(t *testing.T) {
	xzTool := testutil.NeedTool(t, "xz")
	nar := makeNAR(t, strings.Repeat("0123456789abcdef", 40000))
	dir := t.TempDir()
	in := filepath.Join(dir, "nar")
	os.WriteFile(in, nar, 0o600)
	for _, check := range []string{"none", "crc32", "crc64", "sha256"} {
		out, err := exec.Command(xzTool, "-c", "-T1", "--block-size=100KiB", "--check="+check, in).Output()
		if err != nil {
			t.Fatal(err)
		}
		if check == "crc64" {
			out = append(append(out, 0, 0, 0, 0), compress(t, makeNAR(t, "x"), "xz")...) // the NAR then ends in the first stream
		}
		var file bytes.Buffer
		res, err := receiveNAR(bytes.NewReader(out), &file, "xz", 1<<30, 64<<20)
		if check == "crc64" {
			if err == nil || !strings.Contains(err.Error(), "data after the end") {
				t.Errorf("two NARs in two streams: %v", err)
			}
			continue
		}
		if err != nil || res.NarHash != sha256.Sum256(nar) {
			t.Fatalf("check %s: %v", check, err)
		}
		// A flipped byte in the last block's data is caught by the block check.
		bad := bytes.Clone(out)
		bad[len(bad)-80] ^= 1
		if _, err := receiveNAR(bytes.NewReader(bad), io.Discard, "xz", 1<<30, 64<<20); err == nil && check != "none" {
			t.Errorf("check %s: a corrupt block was accepted", check)
		}
	}
}

// FuzzXZReader: whatever the gate's xz reader accepts, ulikunitz/xz's reads the
// same way.
func FuzzXZReader(f *testing.F) {
	f.Add(compress(f, makeNAR(f, "hello"), "xz"))
	for _, d := range hugeDictXZ(f) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		xr, err := newXZReader(bufioReader(data), 16<<20, nil)
		if err != nil {
			return
		}
		ours, err := io.ReadAll(io.LimitReader(xr, 1<<20))
		if err != nil {
			return
		}
		ref, err := xz.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("ulikunitz/xz refuses what the gate accepts: %v", err)
		}
		theirs, err := io.ReadAll(io.LimitReader(ref, 1<<20))
		if err != nil || !bytes.Equal(ours, theirs) {
			t.Fatalf("ulikunitz/xz reads otherwise: %v", err)
		}
	})
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
