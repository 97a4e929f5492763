// Command gate-push-null is a Nix HTTP binary cache that keeps nothing: it answers
// nix-cache-info, says every narinfo and NAR is absent and reads and discards
// uploads. bench/gate-push.sh times `nix copy --to http://` against it to show what
// Nix's HTTP upload costs by itself, apart from any server's work.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:18598", "address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nix-cache-info", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")
	})
	mux.HandleFunc("PUT /", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	mux.HandleFunc("/", http.NotFound)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
