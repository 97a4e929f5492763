package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"nixpki/internal/config"
)

func newNixOSModuleSnippetCmd() *cobra.Command {
	var dir, settings string
	cmd := &cobra.Command{
		Use:   "module-snippet --dir D",
		Short: "Print a services.nixpki block (nix/module.nix) that runs the CA in D with its current settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadDir(dir, settingsFile(settings))
			if err != nil {
				return err
			}
			return writeModuleSnippet(cmd.OutOrStdout(), dir, cfg)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "CA data directory")
	cmd.Flags().StringVar(&settings, "config", "", "settings file of a CA created from one (default $"+config.EnvConfig+")")
	return cmd
}

// alwaysShown are the settings a snippet states even at their defaults: the
// creation-only ones (the module's defaults differ, and a difference would be
// refused) and the addresses.
var alwaysShown = map[string]bool{"name": true, "key_type": true, "dns_names": true, "ip_addresses": true,
	"permitted_dns": true, "permitted_ip": true, "offline_root": true, "external_url": true, "listen": true, "http_listen": true}

// writeModuleSnippet renders cfg as the settings of a services.nixpki block: what
// differs from the defaults, the creation-only settings always, never the password.
func writeModuleSnippet(w io.Writer, dir string, cfg config.Config) error {
	have, err := jsonMap(cfg)
	if err != nil {
		return err
	}
	defaults, err := jsonMap(config.Defaults())
	if err != nil {
		return err
	}
	delete(have, "password_file")
	settings := map[string]any{}
	for k, v := range have {
		d := diffJSON(v, defaults[k])
		if alwaysShown[k] {
			d = v
		}
		if d != nil {
			settings[k] = d
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# nix/module.nix (flake: nixosModules.default). Copy %s to /var/lib/private/nixpki\n", dir)
	fmt.Fprintf(&b, "# (the service's state directory) and its password to a secret outside the store.\n")
	b.WriteString("services.nixpki = {\n  enable = true;\n  passwordFile = \"/run/keys/nixpki-password\";\n  openFirewall = true;\n  settings = ")
	writeNix(&b, settings, "  ")
	b.WriteString(";\n};\nsecurity.nixpki.trust.roots = [ ./root.crt ];\n")
	_, err = io.WriteString(w, b.String())
	return err
}

func jsonMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	return m, dec.Decode(&m)
}

// diffJSON returns the parts of a that differ from b (objects key by key), or nil.
func diffJSON(a, b any) any {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		out := map[string]any{}
		for k, v := range am {
			if d := diffJSON(v, bm[k]); d != nil {
				out[k] = d
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if bytes.Equal(ja, jb) {
		return nil
	}
	return a
}

var nixIdent = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`)

// writeNix renders a JSON value as a Nix expression.
func writeNix(b *strings.Builder, v any, indent string) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		fmt.Fprint(b, v)
	case json.Number:
		b.WriteString(v.String())
	case string:
		b.WriteString(nixString(v))
	case []any:
		if len(v) == 0 {
			b.WriteString("[ ]")
			return
		}
		b.WriteString("[")
		for _, e := range v {
			b.WriteString(" ")
			writeNix(b, e, indent)
		}
		b.WriteString(" ]")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{\n")
		for _, k := range keys {
			name := k
			if !nixIdent.MatchString(k) {
				name = nixString(k)
			}
			fmt.Fprintf(b, "%s  %s = ", indent, name)
			writeNix(b, v[k], indent+"  ")
			b.WriteString(";\n")
		}
		b.WriteString(indent + "}")
	}
}

func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "${", `\${`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
