package audit

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// checkpointContext prefixes the signed bytes, so a checkpoint signature
// cannot be replayed as any other Ed25519 signature made with the key.
const checkpointContext = "keystile audit checkpoint v1\x00"

// Checkpoint is a signed statement that the record Seq of the log has
// hash Hash. Its canonical encoding is
// {"checkpoint":SEQ,"hash":"HEX","time":"TIME","sig":"HEX"}; the
// Ed25519 signature covers checkpointContext followed by the same bytes
// without the sig field.
type Checkpoint struct {
	Seq  uint64
	Hash string
	Time time.Time
	Sig  []byte

	// Raw is the checkpoint exactly as the store holds it (set by readers).
	Raw []byte
}

type checkpointJSON struct {
	Seq  uint64 `json:"checkpoint"`
	Hash string `json:"hash"`
	Time string `json:"time"`
	Sig  string `json:"sig"`
}

func appendCheckpoint(b []byte, c *Checkpoint, withSig bool) []byte {
	b = append(b, `{"checkpoint":`...)
	b = strconv.AppendUint(b, c.Seq, 10)
	b = appendField(b, "hash", c.Hash)
	b = append(b, `,"time":"`...)
	b = c.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, '"')
	if withSig {
		b = appendField(b, "sig", hex.EncodeToString(c.Sig))
	}
	return append(b, '}')
}

func signedBytes(c *Checkpoint) []byte {
	return appendCheckpoint([]byte(checkpointContext), c, false)
}

// signCheckpoint signs c and returns its canonical bytes.
func signCheckpoint(c *Checkpoint, key ed25519.PrivateKey) []byte {
	c.Sig = ed25519.Sign(key, signedBytes(c))
	return appendCheckpoint(nil, c, true)
}

// MarshalJSON returns the checkpoint's canonical bytes.
func (c Checkpoint) MarshalJSON() ([]byte, error) {
	return appendCheckpoint(nil, &c, true), nil
}

// DecodeCheckpoint parses a stored checkpoint. It checks the shape only;
// Verify checks the signature and that the bytes are canonical.
func DecodeCheckpoint(raw []byte) (Checkpoint, error) {
	var j checkpointJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return Checkpoint{Raw: raw}, fmt.Errorf("malformed checkpoint: %v", err)
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Checkpoint{Raw: raw}, fmt.Errorf("malformed checkpoint: time: %v", err)
	}
	sig, err := hex.DecodeString(j.Sig)
	if err != nil {
		return Checkpoint{Raw: raw}, fmt.Errorf("malformed checkpoint: sig: %v", err)
	}
	return Checkpoint{Seq: j.Seq, Hash: j.Hash, Time: t, Sig: sig, Raw: raw}, nil
}

// checkCheckpoint verifies the signature over the stored bytes.
func checkCheckpoint(c *Checkpoint, pub ed25519.PublicKey) error {
	if c.Raw != nil && string(appendCheckpoint(nil, c, true)) != string(c.Raw) {
		return errors.New("checkpoint bytes are not canonical (altered)")
	}
	if len(c.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, signedBytes(c), c.Sig) {
		return errors.New("checkpoint signature does not verify")
	}
	return nil
}
