package verify

import "os"

// SHA256Env names the environment variable that picks how NAR hashes of a local
// store are computed. By default (unset, empty or "generic"), crypto/sha256, one
// stream per path (SHA-NI where the CPU has it); "multi-buffer" hashes sixteen
// paths at once per core (mbhash_linux.go) with github.com/minio/sha256-simd's
// AVX-512 kernel where the CPU has AVX-512, else with sixteen crypto/sha256
// streams. Measured on a shared machine, the multi-buffer driver, whose AVX-512
// rounds run in sha256-simd's server goroutine, cost more CPU than crypto/sha256,
// so it is not the default. All give the same digests; the variable is for tests
// and benchmarks.
const SHA256Env = "NIXPKI_SHA256"

func useMultiBuffer() bool {
	env := os.Getenv(SHA256Env)
	return multiBufferOS && env == "multi-buffer"
}

// hashJobs is how many paths a local store hashes at once by default: enough to
// fill every lane of the multi-buffer hashers, or one per core.
func hashJobs(cores int) int {
	if useMultiBuffer() {
		return cores * lanes
	}
	return cores
}

// multiBufferFor says whether to hash with multi-buffer SHA-256 when jobs paths
// are hashed at once, out of n: a round costs as much with one busy lane as with
// sixteen, so fewer paths than lanes (a single path, or -j 4) go through
// crypto/sha256, one stream per path, at its full speed.
func multiBufferFor(jobs, n int) bool {
	return useMultiBuffer() && (min(jobs, n) >= lanes || os.Getenv(SHA256Env) == "multi-buffer")
}

// lanes is how many NAR streams one multi-buffer hasher takes at once.
const lanes = 16
