package gate

import "fmt"

// Outcome is what admission decided for a narinfo.
type Outcome int

const (
	// Admitted: the path is served.
	Admitted Outcome = iota + 1
	// Pending: the path waits for more signatures or for its references.
	Pending
	// Rejected: the upload is refused (see Rejection); nothing of it is kept.
	Rejected
)

// Rejection says why an upload was rejected, as far as the uploader must act on it.
type Rejection int

const (
	// Invalid: a malformed narinfo, a NAR missing or not matching it, a reference the
	// gate does not hold.
	Invalid Rejection = iota + 1
	// Unsigned: no signature counts.
	Unsigned
	// Conflict: the path is admitted with other content, or its record has other
	// References or another CA field.
	Conflict
	// Gone: its NAR expired from staging before the narinfo came: push it again.
	Gone
	// TooLarge: a NAR past max_nar_size.
	TooLarge
	// StagingFull: staging_max_bytes reached; retry later.
	StagingFull
	// Stalled: the upload stopped coming (see Gate.BodyTimeout).
	Stalled
	// DiskFull: the gate's own disk is full; retry once it has room.
	DiskFull
	// CannotSign: a genuine certificate, kept, that cannot sign for this gate now.
	CannotSign
)

// Verdict is admission's answer to a narinfo upload: its outcome, why it was
// rejected (when it was), and one line for the uploader naming the path, the keys
// and the rule.
type Verdict struct {
	Outcome Outcome
	Why     Rejection // when Rejected
	Message string
}

// rejected is a refusal carried as an error: by the uploads that answer with an
// error (NARs, certificates, CRLs), and through the steps of admission that also
// fail for other reasons (admission turns it back into a Verdict). The server maps
// it to an HTTP status.
type rejected struct {
	why Rejection
	msg string
}

func (r *rejected) Error() string { return r.msg }

func rejectErr(why Rejection, format string, args ...any) error {
	return &rejected{why: why, msg: fmt.Sprintf(format, args...)}
}
