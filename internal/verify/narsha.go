package verify

import (
	"os"
	"sync"

	"nixpki/internal/sha256x16"
)

// SHA256Env names the environment variable that picks how NAR hashes of a local
// store are computed: "generic" forces crypto/sha256, one stream per path;
// anything else (or nothing) hashes sixteen paths at once per core with
// internal/sha256x16 when the CPU has AVX-512 (mbhash_linux.go), crypto/sha256
// otherwise. Both give the same digests; the variable is for tests and
// benchmarks.
const SHA256Env = "NIXPKI_SHA256"

var useMultiBuffer = sync.OnceValue(func() bool {
	return multiBufferOS && os.Getenv(SHA256Env) != "generic" && sha256x16.Available()
})

// hashJobs is how many paths a local store hashes at once by default: enough to
// fill every lane of the multi-buffer hashers, or one per core.
func hashJobs(cores int) int {
	if useMultiBuffer() {
		return cores * sha256x16.Lanes
	}
	return cores
}
