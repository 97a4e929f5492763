package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/spf13/cobra"

	"nixpki/internal/ca"
	"nixpki/internal/server"
)

func newServeCmd() *cobra.Command {
	var f initFlags
	var dir, passwordFile, listen, httpListen string
	cmd := &cobra.Command{
		Use:   "serve --dir D",
		Short: "Run the CA server (HTTPS API and ACME, plain-HTTP CRL/OCSP); initialises D on first run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if !initialised(dir) {
				if err := runInit(cmd, dir, passwordFile, &f, out); err != nil {
					return err
				}
			}
			log := logger()
			c, err := ca.Open(cmd.Context(), dir, passwordFile, log)
			if err != nil {
				return err
			}
			defer c.Close()
			if cmd.Flags().Changed("listen") {
				c.Config.Listen = listen
			}
			if cmd.Flags().Changed("http-listen") {
				c.Config.HTTPListen = httpListen
			}
			mounts := map[string]http.Handler{}
			srv := &server.Server{CA: c, Log: log, Mounts: mounts}
			return srv.Run(cmd.Context(), c.Config.Listen, c.Config.HTTPListen, func(a server.Addrs) {
				base := httpsBase(c, a.HTTPS)
				fmt.Fprintf(out, "nixpki serving %s\n", dir)
				fmt.Fprintf(out, "HTTPS: %s (listening on %s)\n", base, a.HTTPS)
				if a.HTTP != nil {
					fmt.Fprintf(out, "HTTP (CRL, OCSP, CA certificates): listening on %s, advertised as %s\n", a.HTTP, c.Config.ExternalURL)
				}
				fmt.Fprintf(out, "Root SHA-256 fingerprint: %s\n", ca.Fingerprint(c.Root))
				fmt.Fprintf(out, "ACME directory: %s/acme/acme/directory\n", base)
				fmt.Fprintf(out, "NixOS: trust this CA with\n%s", ca.NixOSTrustSnippet(c.Root))
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "data directory (created and initialised on first run)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "password file for the CA keys (default: the one recorded at init)")
	cmd.Flags().StringVar(&listen, "listen", "", "HTTPS listen address (default from config, :8443)")
	cmd.Flags().StringVar(&httpListen, "http-listen", "", "plain-HTTP listen address for CRL/OCSP/CA certs (default from config, :8080; empty string disables)")
	f.register(cmd.Flags())
	return cmd
}

// httpsBase is the https:// URL clients use: the first configured name and the port.
func httpsBase(c *ca.CA, addr net.Addr) string {
	host := "localhost"
	if len(c.Config.DNSNames) > 0 {
		host = c.Config.DNSNames[0]
	} else if len(c.Config.IPAddresses) > 0 {
		host = c.Config.IPAddresses[0]
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	_, port, _ := net.SplitHostPort(addr.String())
	if port == "443" {
		return "https://" + host
	}
	return "https://" + host + ":" + port
}
