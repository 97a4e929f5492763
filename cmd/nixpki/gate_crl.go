package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"nixpki/internal/push"
)

func newGateCRLCmd() *cobra.Command {
	var gateURL, caFile string
	cmd := &cobra.Command{
		Use:   "crl --gate URL FILE…",
		Short: "Upload CRLs (from nixpki nix crl) to a gate, with no store paths",
		Long: `Uploads each CRL file (DER or PEM) to the gate (PUT /nixpki/crl) and prints the gate's
answer. A gate that cannot reach the CA needs a CRL of each issuer at least every
max_crl_age (default 8 days): past it, the gate fails closed and admits nothing those
certificates signed. A newer CRL quarantines what its revocations alone let in.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			u, err := url.Parse(strings.TrimRight(gateURL, "/"))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("--gate %q: give the gate's base URL, http(s)://HOST:PORT", gateURL)
			}
			client, err := push.HTTPClient(caFile)
			if err != nil {
				return err
			}
			var failed []string
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				msg, err := putCRL(cmd, client, u.String()+"/nixpki/crl", data)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "nixpki: %s: %v\n", f, err)
					failed = append(failed, f)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", f, msg)
			}
			if len(failed) > 0 {
				return fmt.Errorf("the gate refused %s", strings.Join(failed, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&gateURL, "gate", "", "the gate's URL, e.g. http://127.0.0.1:8501")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "PEM root(s) to trust for the gate's HTTPS (e.g. the CA's root.crt)")
	cmd.MarkFlagRequired("gate")
	return cmd
}

func putCRL(cmd *cobra.Command, client *http.Client, u string, data []byte) (string, error) {
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPut, u, bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, msg)
	}
	return msg, nil
}
