package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"nixpki/internal/acme"
	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/enroll"
	"nixpki/internal/metrics"
	"nixpki/internal/monitor"
	"nixpki/internal/server"
	"nixpki/internal/x509util"
)

func newServeCmd() *cobra.Command {
	var f initFlags
	var dir, passwordFile, listen, httpListen, settingsFlag string
	var acmeHTTPPort, acmeTLSPort int
	var acmeResolver, metricsListen, externalHTTPS string
	cmd := &cobra.Command{
		Use:   "serve --dir D [--config FILE]",
		Short: "Run the CA server (HTTPS API and ACME, plain-HTTP CRL/OCSP); initialises D on first run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			settings := settingsFile(settingsFlag)
			if settings != "" {
				if err := refuseInitFlags(cmd); err != nil {
					return err
				}
				if !config.Initialised(dir) {
					if err := firstStartFromSettings(cmd, dir, settings, passwordFile, out); err != nil {
						return err
					}
				}
			} else if !initialised(dir) {
				f.listen, f.httpListen = listen, httpListen
				if err := runInit(cmd, dir, passwordFile, &f, out); err != nil {
					return err
				}
			} else if err := initOnlyFlags(cmd.Flags(), &f, dir); err != nil {
				return err
			}
			log := logger()
			explainHangup(cmd.Context(), log, "nixpki serve")
			if err := startPprof(os.Getenv("NIXPKI_PPROF"), log); err != nil {
				return err
			}
			c, err := ca.OpenSettings(cmd.Context(), dir, settings, passwordFile, log)
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
			// ACME: --acme-* flags override the config; the directory's base URL is
			// known before listening when the port is fixed, else (port 0) it follows
			// the Host clients connect to.
			if cmd.Flags().Changed("acme-http-port") {
				c.Config.ACME.HTTPPort = acmeHTTPPort
			}
			if cmd.Flags().Changed("acme-tls-port") {
				c.Config.ACME.TLSPort = acmeTLSPort
			}
			if cmd.Flags().Changed("acme-resolver") {
				c.Config.ACME.Resolver = acmeResolver
			}
			if cmd.Flags().Changed("external-https-url") {
				c.Config.ExternalHTTPSURL = externalHTTPS
			}
			acmeBase := strings.TrimRight(c.Config.ExternalHTTPSURL, "/")
			if _, port, err := net.SplitHostPort(c.Config.Listen); err == nil && acmeBase == "" {
				if p, err := strconv.Atoi(port); err == nil && p != 0 {
					acmeBase = httpsBase(c, &net.TCPAddr{Port: p})
				}
			}
			acmeSrv, err := acme.New(acme.Options{CA: c, Log: log, Config: c.Config.ACME, BaseURL: acmeBase})
			if err != nil {
				return err
			}
			defer acmeSrv.Close()
			mounts["/acme/"] = acmeSrv
			mounts["/nix/"] = enroll.Handler(c, log)
			_, wrap, err := startMetrics(cmd.Context(), metricsListen, log, metrics.Shared(monitor.ForCA(c).Collector()))
			if err != nil {
				return err
			}
			srv := &server.Server{CA: c, Log: log, Mounts: mounts, Wrap: wrap}
			return srv.Run(cmd.Context(), c.Config.Listen, c.Config.HTTPListen, func(a server.Addrs) {
				base := httpsBase(c, a.HTTPS)
				fmt.Fprintf(out, "nixpki serving %s\n", dir)
				fmt.Fprintf(out, "HTTPS: %s (listening on %s)\n", base, a.HTTPS)
				if a.HTTP != nil {
					fmt.Fprintf(out, "HTTP (CRL, OCSP, CA certificates): listening on %s, advertised as %s\n", a.HTTP, c.Config.ExternalURL)
				}
				fmt.Fprintf(out, "Root SHA-256 fingerprint: %s\n", x509util.Fingerprint(c.Root))
				for _, p := range acmeSrv.Provisioners() {
					fmt.Fprintf(out, "ACME directory: %s/acme/%s/directory\n", base, p)
				}
				for _, line := range exposure(c.Config, a.HTTPS) {
					fmt.Fprintf(out, "NOTE: %s\n", line)
				}
				fmt.Fprintf(out, "NixOS: trust this CA with\n%s", ca.NixOSTrustSnippet(c.Root))
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "./nixpki-data", "data directory (created and initialised on first run)")
	cmd.Flags().StringVar(&settingsFlag, "config", "", "settings file (JSON, read-only, e.g. in /nix/store; default $"+config.EnvConfig+"); D then holds only state")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "password file for the CA keys (default: the one recorded at init)")
	cmd.Flags().StringVar(&listen, "listen", "", "HTTPS listen address (default from config, :8443)")
	cmd.Flags().StringVar(&httpListen, "http-listen", "", "plain-HTTP listen address for CRL/OCSP/CA certs (default from config, :8080; empty string disables)")
	cmd.Flags().IntVar(&acmeHTTPPort, "acme-http-port", 0, "port the ACME validator connects to for http-01 (default from config, 80)")
	cmd.Flags().IntVar(&acmeTLSPort, "acme-tls-port", 0, "port the ACME validator connects to for tls-alpn-01 (default from config, 443)")
	cmd.Flags().StringVar(&acmeResolver, "acme-resolver", "", "DNS resolver HOST:PORT the ACME validator uses for dns-01 and for resolving names (default from config, the system's)")
	cmd.Flags().StringVar(&metricsListen, "metrics-listen", "", metricsListenHelp)
	cmd.Flags().StringVar(&externalHTTPS, "external-https-url", "", "HTTPS base URL clients reach this server at when it is behind a load balancer (default from config external_https_url, else the listen address)")
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

// startPprof serves net/http/pprof on addr when it is set (NIXPKI_PPROF=127.0.0.1:6060),
// for profiling; only a loopback address is accepted.
func startPprof(addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("NIXPKI_PPROF=%q: give a loopback address such as 127.0.0.1:6060", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("NIXPKI_PPROF: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Warn("serving pprof (NIXPKI_PPROF)", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
	return nil
}

// exposure says who can reach the server and which ACME provisioners anyone who
// can reach it may use, with the settings that restrict them.
func exposure(cfg config.Config, https net.Addr) []string {
	var notes []string
	if tcp, ok := https.(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		notes = append(notes, fmt.Sprintf("listening on loopback only (%s): other machines cannot reach this CA; give --listen and --http-listen (e.g. 0.0.0.0:8443, 0.0.0.0:8080) or listen/http_listen in the configuration", https))
	}
	provs := cfg.ACME.Provisioners
	if len(provs) == 0 {
		provs = []config.ACMEProvisioner{{Name: acme.DefaultProvisioner}}
	}
	for _, p := range provs {
		if p.RequireEAB || len(p.AllowedDNS)+len(p.AllowedIP) > 0 {
			continue
		}
		notes = append(notes, fmt.Sprintf("ACME provisioner %q issues to anyone who can reach it, for any name within the CA's name constraints: require External Account Binding (require_eab, keys from nixpki acme eab create) or limit names (allowed_dns, allowed_ip); see docs/config.md", p.Name))
	}
	return notes
}
