package storepath

import (
	"strings"
	"testing"
)

func TestStorePaths(t *testing.T) {
	good := []string{
		"syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin",
		"00000000000000000000000000000000-a",
		"00000000000000000000000000000000-.x",
		"00000000000000000000000000000000-+-._?=AZaz09",
		"00000000000000000000000000000000-" + strings.Repeat("n", MaxNameLen),
	}
	for _, b := range good {
		if err := ValidateBaseName(b); err != nil {
			t.Errorf("ValidateBaseName(%q) = %v", b, err)
		}
		if HashPart(b) != b[:32] || NamePart(b) != b[33:] || HashPart("/nix/store/"+b) != b[:32] {
			t.Errorf("HashPart/NamePart(%q)", b)
		}
		if base, err := Parse(DefaultStoreDir, "/nix/store/"+b); err != nil || base != b {
			t.Errorf("Parse(%q) = %q, %v", b, base, err)
		}
	}
	bad := []string{
		"", "..", ".", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-",
		"syd87l2rxw8cbsxmxl853h0r6pdwhwjr_curl", "syd87l2rxw8cbsxmxl853h0r6pdwhwjE-curl",
		"eyd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-cu/rl",
		"syd87l2rxw8cbsxmxl853h0r6pdwhwjr-cu rl", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-cu\x00rl",
		"syd87l2rxw8cbsxmxl853h0r6pdwhwjr-..", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-.", "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-..-x",
		"syd87l2rxw8cbsxmxl853h0r6pdwhwjr-é",
		"00000000000000000000000000000000-" + strings.Repeat("n", MaxNameLen+1),
	}
	for _, b := range bad {
		if err := ValidateBaseName(b); err == nil {
			t.Errorf("ValidateBaseName(%q) = nil", b)
		}
	}
	for _, d := range []string{"", "/", "nix/store", "/nix/store/", "/nix//store", "/nix/./store", "/nix/st ore", "/nix;store"} {
		if err := ValidateStoreDir(d); err == nil {
			t.Errorf("ValidateStoreDir(%q) = nil", d)
		}
	}
	if _, err := Parse(DefaultStoreDir, "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl/bin"); err == nil {
		t.Error("Parse accepted a path below a store path")
	}
	dir, base, err := Split("/opt/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl")
	if err != nil || dir != "/opt/store" || base != "syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl" {
		t.Errorf("Split = %q, %q, %v", dir, base, err)
	}
}
