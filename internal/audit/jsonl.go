package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// maxLine bounds one stored line; a longer line is reported as malformed.
const maxLine = 1 << 20

var checkpointPrefix = []byte(`{"checkpoint":`)

// JSONLStore keeps the log in a file: one canonical record per line,
// checkpoints on lines of their own. Each Append is one write followed by
// fsync. It is a Store (unless opened read-only) and a Reader.
type JSONLStore struct {
	path     string
	readOnly bool

	mu      sync.Mutex
	f       *os.File // append handle; nil when read-only
	regular bool     // f is a regular file (it can be truncated)
	size    int64    // bytes known good (durable, whole lines)
	dirty   bool     // bytes past size may exist: truncate before writing
}

// OpenJSONL opens (creating with mode 0600) the log file at path for
// appending. A torn last line (a write that never completed, so was never
// acknowledged) is cut off. A device such as /dev/full is accepted (it is
// written to, never read).
func OpenJSONL(path string) (*JSONLStore, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600) // #nosec G304 -- operator's audit path
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	s := &JSONLStore{path: path, f: f, regular: st.Mode().IsRegular()}
	if errors.Is(statErr, fs.ErrNotExist) {
		syncDir(filepath.Dir(path))
	}
	if s.regular {
		end, err := s.wholeLinesEnd(st.Size())
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if end != st.Size() {
			if err := f.Truncate(end); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("audit: open %s: cut torn last line: %w", path, err)
			}
		}
		s.size = end
	}
	return s, nil
}

// OpenJSONLReader opens the log file at path for reading only; it never
// changes the file, so it is safe while a server appends to it.
func OpenJSONLReader(path string) (*JSONLStore, error) {
	f, err := os.Open(path) // #nosec G304 -- operator's audit path
	if err != nil {
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	_ = f.Close()
	return &JSONLStore{path: path, readOnly: true}, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- directory of the operator's audit path
		_ = d.Sync()
		_ = d.Close()
	}
}

// wholeLinesEnd returns the offset just after the last newline at or
// before size.
func (s *JSONLStore) wholeLinesEnd(size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	r, err := os.Open(s.path) // #nosec G304 -- operator's audit path
	if err != nil {
		return 0, fmt.Errorf("audit: open %s: %w", s.path, err)
	}
	defer r.Close()
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(end-int64(len(buf)), 0)
		n, err := r.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// Head implements Store: it reads the file backwards to its last record.
func (s *JSONLStore) Head(ctx context.Context) (Head, error) {
	r, err := os.Open(s.path) // #nosec G304 -- operator's audit path
	if err != nil {
		return Head{}, fmt.Errorf("audit: open %s: %w", s.path, err)
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return Head{}, err // a device: an empty log each time
	}
	size, err := s.wholeLinesEnd(st.Size())
	if err != nil || size == 0 {
		return Head{}, err
	}
	for chunk := int64(64 << 10); ; chunk *= 2 {
		if err := ctx.Err(); err != nil {
			return Head{}, err
		}
		start := max(size-chunk, 0)
		buf := make([]byte, size-start)
		if _, err := r.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
			return Head{}, fmt.Errorf("audit: read %s: %w", s.path, err)
		}
		lines := bytes.Split(bytes.TrimSuffix(buf, []byte{'\n'}), []byte{'\n'})
		if start > 0 {
			lines = lines[1:] // may begin mid-line
		}
		var h Head
		for i := len(lines) - 1; i >= 0; i-- {
			ln := lines[i]
			if bytes.HasPrefix(ln, checkpointPrefix) {
				if h.CheckpointSeq == 0 {
					if c, err := DecodeCheckpoint(ln); err == nil {
						h.CheckpointSeq = c.Seq
					}
				}
				continue
			}
			rec, err := checkRecord(ln)
			if err != nil {
				return Head{}, fmt.Errorf("audit: %s: last record: %w (run keystile audit verify)", s.path, err)
			}
			if h.CheckpointSeq != rec.Seq {
				h.CheckpointSeq = 0
			}
			h.Seq, h.Hash = rec.Seq, rec.Hash
			return h, nil
		}
		if start == 0 {
			return Head{}, nil // no record at all
		}
	}
}

// Append implements Store: one write of every line, then fsync. On
// failure the file is cut back to its last good size.
func (s *JSONLStore) Append(_ context.Context, recs []Record, cps []Checkpoint) error {
	if s.readOnly {
		return fmt.Errorf("audit: %s: opened read-only", s.path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty && s.regular {
		if err := s.f.Truncate(s.size); err != nil {
			return fmt.Errorf("audit: %s: cut failed write: %w", s.path, err)
		}
		s.dirty = false
	}
	buf := appendLines(nil, recs, cps)
	n, err := s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		if s.regular {
			s.dirty = true
			if terr := s.f.Truncate(s.size); terr == nil {
				s.dirty = false
			}
		}
		return fmt.Errorf("audit: write %s: %w", s.path, err)
	}
	s.size += int64(n)
	return nil
}

// Close implements Store.
func (s *JSONLStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// lines calls fn for each whole line of the file (a last line without a
// newline is being written, or torn: it is skipped). A line longer than
// maxLine is passed truncated, as malformed.
func (s *JSONLStore) lines(ctx context.Context, fn func([]byte) error) error {
	r, err := os.Open(s.path) // #nosec G304 -- operator's audit path
	if err != nil {
		return fmt.Errorf("audit: open %s: %w", s.path, err)
	}
	defer r.Close()
	if st, err := r.Stat(); err != nil || !st.Mode().IsRegular() {
		return err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		frag, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			line := frag[:len(frag)-1]
			if long != nil {
				line = append(long, line...)
				if len(line) > maxLine {
					line = line[:maxLine]
				}
				long = nil
			}
			if err := fn(line); err != nil {
				return err
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if len(long) < maxLine {
				long = append(long, frag...)
			}
		case errors.Is(err, io.EOF):
			return nil
		default:
			return fmt.Errorf("audit: read %s: %w", s.path, err)
		}
	}
}

// Scan implements Reader.
func (s *JSONLStore) Scan(ctx context.Context, from uint64, fn func(Record) error) error {
	var last uint64
	return s.lines(ctx, func(ln []byte) error {
		if bytes.HasPrefix(ln, checkpointPrefix) {
			return nil
		}
		raw := bytes.Clone(ln)
		r, err := DecodeRecord(raw)
		if err != nil {
			if last+1 < from {
				return nil
			}
			return fn(Record{Raw: raw})
		}
		last = r.Seq
		if r.Seq < from {
			return nil
		}
		return fn(r)
	})
}

// Checkpoints implements Reader.
func (s *JSONLStore) Checkpoints(ctx context.Context, fn func(Checkpoint) error) error {
	return s.lines(ctx, func(ln []byte) error {
		if !bytes.HasPrefix(ln, checkpointPrefix) {
			return nil
		}
		raw := bytes.Clone(ln)
		c, err := DecodeCheckpoint(raw)
		if err != nil {
			return fn(Checkpoint{Raw: raw})
		}
		return fn(c)
	})
}

var (
	_ Store  = (*JSONLStore)(nil)
	_ Reader = (*JSONLStore)(nil)
)
