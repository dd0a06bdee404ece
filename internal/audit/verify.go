package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
)

// Report summarises a verified log.
type Report struct {
	Records           uint64 `json:"records"`
	Checkpoints       int    `json:"checkpoints"`
	LastSeq           uint64 `json:"last_seq"`
	LastCheckpointSeq uint64 `json:"last_checkpoint_seq"`
	// Unsigned counts the records after the last checkpoint: they chain
	// correctly, but their removal from the end could not be detected
	// (normal after an unclean stop, until the next checkpoint).
	Unsigned uint64 `json:"unsigned"`
}

// VerifyError names the first record that fails verification.
type VerifyError struct {
	Seq    uint64 // the first bad (altered, missing, misplaced) record's seq
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: verify: record %d: %s", e.Seq, e.Reason)
}

// Verify recomputes the chain of src from its first record and checks
// every checkpoint's signature with pub and that it names a stored record
// with the same hash. It returns a *VerifyError naming the first bad
// record, or another error if src cannot be read.
func Verify(ctx context.Context, src Reader, pub ed25519.PublicKey) (Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Report{}, errors.New("audit: verify: public key is not an Ed25519 key")
	}
	var cps []Checkpoint
	err := src.Checkpoints(ctx, func(c Checkpoint) error {
		if _, err := DecodeCheckpoint(c.Raw); err != nil {
			return &VerifyError{Seq: c.Seq, Reason: fmt.Sprintf("checkpoint after record %d: %v", lastSeqOf(cps), err)}
		}
		cps = append(cps, c)
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].Seq < cps[j].Seq })
	var rep Report
	rep.Checkpoints = len(cps)
	next, prev := uint64(1), zeroHash
	ci := 0
	err = src.Scan(ctx, 1, func(sr Record) error {
		r, err := checkRecord(sr.Raw)
		if err != nil {
			return &VerifyError{Seq: next, Reason: err.Error()}
		}
		if r.Seq != next {
			return &VerifyError{Seq: next, Reason: fmt.Sprintf("expected record %d here, found record %d (missing, reordered or inserted records)", next, r.Seq)}
		}
		if r.Prev != prev {
			return &VerifyError{Seq: next, Reason: "prev does not match the previous record's hash (chain broken)"}
		}
		for ; ci < len(cps) && cps[ci].Seq <= r.Seq; ci++ {
			c := &cps[ci]
			if c.Seq < r.Seq {
				continue // only possible for seq 0: reported below as out of range
			}
			if err := checkCheckpoint(c, pub); err != nil {
				return &VerifyError{Seq: r.Seq, Reason: "checkpoint: " + err.Error()}
			}
			if c.Hash != r.Hash {
				return &VerifyError{Seq: r.Seq, Reason: "checkpoint: signed hash differs from the stored record's"}
			}
			rep.LastCheckpointSeq = r.Seq
		}
		rep.Records++
		rep.LastSeq = r.Seq
		next, prev = r.Seq+1, r.Hash
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, c := range cps {
		if c.Seq == 0 {
			return rep, &VerifyError{Seq: 0, Reason: "checkpoint for record 0 (no such record)"}
		}
	}
	if ci < len(cps) {
		c := &cps[ci]
		if err := checkCheckpoint(c, pub); err != nil {
			return rep, &VerifyError{Seq: c.Seq, Reason: "checkpoint beyond the end of the log: " + err.Error()}
		}
		return rep, &VerifyError{Seq: rep.LastSeq + 1, Reason: fmt.Sprintf(
			"log truncated: a signed checkpoint names record %d but the log ends at record %d", c.Seq, rep.LastSeq)}
	}
	rep.Unsigned = rep.LastSeq - rep.LastCheckpointSeq
	return rep, nil
}

func lastSeqOf(cps []Checkpoint) uint64 {
	if len(cps) == 0 {
		return 0
	}
	return cps[len(cps)-1].Seq
}
