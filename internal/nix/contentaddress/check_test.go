package contentaddress

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/nixhash"
)

func narOf(t *testing.T, entries []nar.Entry, contents map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	for _, e := range entries {
		e := e
		if err := w.WriteHeader(&e); err != nil {
			t.Fatal(err)
		}
		if c, ok := contents[e.Path]; ok {
			if _, err := io.WriteString(w, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestCheckNARContent(t *testing.T) {
	data := "hello, world\n"
	file := narOf(t, []nar.Entry{{Path: "/", Type: nar.Regular, Size: int64(len(data))}}, map[string]string{"/": data})
	exe := narOf(t, []nar.Entry{{Path: "/", Type: nar.Executable, Size: int64(len(data))}}, map[string]string{"/": data})
	dir := narOf(t, []nar.Entry{{Path: "/", Type: nar.Directory}, {Path: "/f", Type: nar.Regular, Size: int64(len(data))}}, map[string]string{"/f": data})
	digest := func(algo string, b []byte) []byte {
		h, err := nixhash.New(algo)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
		return h.Sum(nil)
	}
	cases := []struct {
		name  string
		nar   []byte
		ca    ContentAddress
		match bool
	}{
		{"flat sha256", file, ContentAddress{FixedFlat, "sha256", digest("sha256", []byte(data))}, true},
		{"flat md5", file, ContentAddress{FixedFlat, "md5", digest("md5", []byte(data))}, true},
		{"flat sha512 other bytes", file, ContentAddress{FixedFlat, "sha512", digest("sha512", []byte("other"))}, false},
		{"flat executable", exe, ContentAddress{FixedFlat, "sha256", digest("sha256", []byte(data))}, false},
		{"flat directory", dir, ContentAddress{FixedFlat, "sha256", digest("sha256", []byte(data))}, false},
		{"text", file, ContentAddress{Text, "sha256", digest("sha256", []byte(data))}, true},
		{"text executable", exe, ContentAddress{Text, "sha256", digest("sha256", []byte(data))}, false},
		{"recursive sha1", dir, ContentAddress{FixedRecursive, "sha1", digest("sha1", dir)}, true},
		{"recursive sha512 other NAR", dir, ContentAddress{FixedRecursive, "sha512", digest("sha512", file)}, false},
	}
	for _, c := range cases {
		err := CheckNAR(bytes.NewReader(c.nar), c.ca)
		if c.match && err != nil || !c.match && !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := CheckNAR(bytes.NewReader(file[:len(file)-9]), cases[0].ca); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("truncated NAR: %v", err)
	}
}
