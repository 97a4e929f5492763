package verify

import (
	"os"

	"nixpki/internal/sha256x16"
)

// SHA256Env names the environment variable that picks how NAR hashes of a local
// store are computed. By default (unset or empty), many paths are hashed at once
// per core (mbhash_linux.go) where the CPU has sha256x16's AVX-512 kernel, and
// each path with crypto/sha256 (SHA-NI where the CPU has it) elsewhere;
// "generic" always takes crypto/sha256, one stream per path; "multi-buffer"
// always takes the multi-path driver, whose rounds then run on crypto/sha256
// where the CPU lacks the kernel. All give the same digests; the variable is for
// tests and benchmarks.
const SHA256Env = "NIXPKI_SHA256"

func useMultiBuffer() bool {
	switch os.Getenv(SHA256Env) {
	case "multi-buffer":
		return multiBufferOS
	case "generic":
		return false
	}
	return multiBufferOS && sha256x16.Fast()
}

// hashJobs is how many paths a local store hashes at once by default: enough to
// fill every lane of the multi-path drivers, or one per core.
func hashJobs(cores int) int {
	if useMultiBuffer() {
		return cores * lanes
	}
	return cores
}

// multiBufferFor says whether to hash with the multi-path drivers when jobs
// paths are hashed at once, out of n: with fewer paths than lanes (a single
// path, or -j 4) the kernel would run mostly empty, so each path goes through
// crypto/sha256 on its own goroutine, at its full speed.
func multiBufferFor(jobs, n int) bool {
	return useMultiBuffer() && (min(jobs, n) >= lanes || os.Getenv(SHA256Env) == "multi-buffer")
}

// lanes is how many NAR streams one multi-path driver hashes at once.
const lanes = sha256x16.Lanes
