package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"nixpki/internal/config"
)

// initOnlyFlags refuses flags that only init uses when serve runs on a directory
// that is initialised already and records another value: they would otherwise be
// silently ignored. Repeating the recorded value is fine.
func initOnlyFlags(fs *pflag.FlagSet, f *initFlags, dir string) error {
	rec, err := config.Load(dir)
	if err != nil {
		return err
	}
	same := func(a, b []string) bool {
		return slices.Equal(lower(a), lower(b))
	}
	checks := []struct {
		flag      string
		given     string
		recorded  string
		unchanged bool
	}{
		{"name", f.name, rec.Name, f.name == rec.Name},
		{"key-type", f.keyType, rec.KeyType, f.keyType == rec.KeyType},
		{"permitted-dns", strings.Join(f.permDNS, ","), strings.Join(rec.PermittedDNS, ","), same(f.permDNS, rec.PermittedDNS)},
		{"permitted-ip", strings.Join(f.permIP, ","), strings.Join(rec.PermittedIP, ","), same(f.permIP, rec.PermittedIP)},
		{"dns", strings.Join(f.dns, ","), strings.Join(rec.DNSNames, ","), same(f.dns, rec.DNSNames)},
		{"ip", strings.Join(f.ips, ","), strings.Join(rec.IPAddresses, ","), same(f.ips, rec.IPAddresses)},
		{"external-url", f.externalURL, rec.ExternalURL, f.externalURL == rec.ExternalURL},
		{"offline-root", fmt.Sprint(f.offlineRoot), fmt.Sprint(rec.OfflineRoot), f.offlineRoot == rec.OfflineRoot},
	}
	for _, c := range checks {
		if fs.Changed(c.flag) && !c.unchanged {
			return fmt.Errorf("--%s %q: %s is initialised with %q, fixed at init; leave the flag out (a new value needs a new CA: nixpki init --dir NEWDIR)", c.flag, c.given, dir, c.recorded)
		}
	}
	return nil
}

func lower(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}
