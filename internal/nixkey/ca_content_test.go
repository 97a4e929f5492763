package nixkey

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func narOf(t *testing.T, entries []NAREntry, contents map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := NewNARWriter(&b)
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
	file := narOf(t, []NAREntry{{Path: "/", Type: NARRegular, Size: int64(len(data))}}, map[string]string{"/": data})
	exe := narOf(t, []NAREntry{{Path: "/", Type: NARExecutable, Size: int64(len(data))}}, map[string]string{"/": data})
	dir := narOf(t, []NAREntry{{Path: "/", Type: NARDirectory}, {Path: "/f", Type: NARRegular, Size: int64(len(data))}}, map[string]string{"/f": data})
	digest := func(algo string, b []byte) []byte {
		h, err := NewHash(algo)
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
		{"flat sha256", file, ContentAddress{CAFixedFlat, "sha256", digest("sha256", []byte(data))}, true},
		{"flat md5", file, ContentAddress{CAFixedFlat, "md5", digest("md5", []byte(data))}, true},
		{"flat sha512 other bytes", file, ContentAddress{CAFixedFlat, "sha512", digest("sha512", []byte("other"))}, false},
		{"flat executable", exe, ContentAddress{CAFixedFlat, "sha256", digest("sha256", []byte(data))}, false},
		{"flat directory", dir, ContentAddress{CAFixedFlat, "sha256", digest("sha256", []byte(data))}, false},
		{"text", file, ContentAddress{CAText, "sha256", digest("sha256", []byte(data))}, true},
		{"text executable", exe, ContentAddress{CAText, "sha256", digest("sha256", []byte(data))}, false},
		{"recursive sha1", dir, ContentAddress{CAFixedRecursive, "sha1", digest("sha1", dir)}, true},
		{"recursive sha512 other NAR", dir, ContentAddress{CAFixedRecursive, "sha512", digest("sha512", file)}, false},
	}
	for _, c := range cases {
		err := CheckNARContent(bytes.NewReader(c.nar), c.ca)
		if c.match && err != nil || !c.match && !errors.Is(err, ErrCAMismatch) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if err := CheckNARContent(bytes.NewReader(file[:len(file)-9]), cases[0].ca); err == nil || errors.Is(err, ErrCAMismatch) {
		t.Errorf("truncated NAR: %v", err)
	}
}
