package app

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/masterkey"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// BackupFormat names the archive format Backup writes and Restore reads.
const BackupFormat = "keystile-backup/1"

// ManifestFile is the first member of a backup archive.
const ManifestFile = "MANIFEST.json"

// Limits of the archive reader.
const (
	maxManifestBytes = 1 << 20
	maxBackupMember  = 64 << 30
)

// Errors of backups.
var (
	// ErrBackupArchive marks an archive Restore refuses: not a keystile
	// backup, a member it does not know, a size or digest that does not
	// match its manifest.
	ErrBackupArchive = errors.New("not a valid keystile backup")
	// ErrNoMasterKey: the restored vault's master key file is not at hand
	// (backups never hold it).
	ErrNoMasterKey = errors.New("the backup holds no master key")
)

// BackupManifest describes an archive: what it holds, each member's size
// and SHA-256, and how the vault's master key is obtained — the key
// itself is never in a backup.
type BackupManifest struct {
	Format    string       `json:"format"`
	Created   time.Time    `json:"created"`
	Version   string       `json:"keystile_version"`
	MasterKey BackupKey    `json:"master_key"`
	Files     []BackupFile `json:"files"`
}

// BackupKey is the master-key source the vault was initialised with.
type BackupKey struct {
	Source string `json:"source"`
	// KeyFile is the key file the vault records (file source): relative
	// to the data dir, or absolute for one kept elsewhere.
	KeyFile string `json:"key_file,omitempty"`
	// Included is always false: the key travels separately.
	Included bool `json:"included"`
}

// BackupFile is one member of the archive.
type BackupFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// backupMember reports the names a backup may hold: each is restored
// under the same name in the data dir.
func backupMember(name string) bool {
	switch name {
	case DBFile, AuditDBFile, AuditJSONLFile, ConfigFile, LocalCAFile:
		return true
	}
	return false
}

// BackupOptions configure Backup.
type BackupOptions struct {
	DataDir string
	Config  *config.Config // the config in force (audit sink and path)
	// Archive is the file to write; it must not exist.
	Archive string
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
}

// BackupResult reports what Backup wrote.
type BackupResult struct {
	Archive  string         `json:"archive"`
	Manifest BackupManifest `json:"manifest"`
	// KeyFile is the master key file the data dir uses (file source):
	// what must be kept, separately, to restore.
	KeyFile string `json:"key_file,omitempty"`
}

// Backup writes a gzip'd tar archive of the data dir that can be taken
// while serve runs: a consistent snapshot of the database (SQLite VACUUM
// INTO, one read transaction) and of the audit log (SQLite snapshot, or
// the complete lines of a JSONL log), keystile.yaml if the data dir holds
// one, and a manifest with every member's SHA-256. The master key is
// never included — not the key file, not anything derived from it — so
// the archive alone opens nothing: the key file (or passphrase, keyring
// entry, environment variable) must be kept separately, and Restore asks
// for it. Credentials in the database stay sealed under that key.
func Backup(ctx context.Context, o BackupOptions) (BackupResult, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	cfg := o.Config
	if cfg == nil {
		cfg = config.Default()
	}
	res := BackupResult{Archive: o.Archive}
	if o.Archive == "" {
		return res, errors.New("app: backup: no archive path")
	}
	if cfg.Store.Shared() {
		return res, errors.New("app: backup: the store is PostgreSQL (store.postgres): back it up with pg_dump or your database's backups; keystile backup covers the embedded SQLite store")
	}
	if err := CheckDataDir(o.DataDir); err != nil {
		return res, err
	}
	stage, err := os.MkdirTemp(o.DataDir, ".backup-")
	if err != nil {
		return res, fmt.Errorf("app: backup: %w", err)
	}
	defer os.RemoveAll(stage)

	if err := sqlite.Snapshot(ctx, filepath.Join(o.DataDir, DBFile), filepath.Join(stage, DBFile)); err != nil {
		return res, fmt.Errorf("app: backup: %w", err)
	}
	params, err := readParams(ctx, filepath.Join(stage, DBFile))
	if err != nil {
		return res, fmt.Errorf("app: backup: %w", err)
	}
	res.Manifest = BackupManifest{Format: BackupFormat, Created: now().UTC(), Version: Version,
		MasterKey: BackupKey{Source: params.Source, KeyFile: params.KeyFile}}
	if params.Source == masterkey.SourceFile {
		if res.KeyFile, err = ResolveKeyFile(o.DataDir, cfg.MasterKey.File, params.KeyFile); err != nil {
			return res, err
		}
	}
	members := []string{DBFile}
	sink, auditPath, err := AuditSink(cfg, o.DataDir)
	if err != nil {
		return res, err
	}
	switch {
	case sink == AuditSinkSQLite && exists(auditPath):
		if err := sqlite.Snapshot(ctx, auditPath, filepath.Join(stage, AuditDBFile)); err != nil {
			return res, fmt.Errorf("app: backup: audit log: %w", err)
		}
		members = append(members, AuditDBFile)
	case sink == AuditSinkJSONL && exists(auditPath):
		if err := copyLines(auditPath, filepath.Join(stage, AuditJSONLFile)); err != nil {
			return res, fmt.Errorf("app: backup: audit log: %w", err)
		}
		members = append(members, AuditJSONLFile)
	}
	// The config file, and the local CA's certificate (public; its key is
	// in the database): without it a restored server would make a new CA
	// that no bot trusts.
	for _, name := range []string{ConfigFile, LocalCAFile} {
		if p := filepath.Join(o.DataDir, name); exists(p) {
			if err := copyFile(p, filepath.Join(stage, name)); err != nil {
				return res, fmt.Errorf("app: backup: %w", err)
			}
			members = append(members, name)
		}
	}
	for _, m := range members {
		f, err := fileDigest(filepath.Join(stage, m))
		if err != nil {
			return res, fmt.Errorf("app: backup: %w", err)
		}
		f.Name = m
		res.Manifest.Files = append(res.Manifest.Files, f)
	}
	if err := writeArchive(o.Archive, stage, res.Manifest); err != nil {
		return res, err
	}
	return res, nil
}

// readParams reads the master-key parameters recorded in a database.
func readParams(ctx context.Context, dbPath string) (masterkey.Params, error) {
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return masterkey.Params{}, err
	}
	defer db.Close()
	pj, err := db.Vault().Meta(ctx, metaMasterKey)
	if err != nil {
		return masterkey.Params{}, fmt.Errorf("%w: %v", vault.ErrNotInitialized, err)
	}
	var p masterkey.Params
	if err := json.Unmarshal(pj, &p); err != nil {
		return masterkey.Params{}, fmt.Errorf("stored master key parameters: %w", err)
	}
	return p, nil
}

// fileDigest returns a file's size and SHA-256.
func fileDigest(p string) (BackupFile, error) {
	f, err := os.Open(p) // #nosec G304 -- a file of the backup's staging dir
	if err != nil {
		return BackupFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return BackupFile{}, err
	}
	return BackupFile{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeArchive writes the manifest then every member to a new file at
// path (0600, refused if it exists), synced before it is reported done.
func writeArchive(path, stage string, m BackupManifest) (err error) {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the operator's archive path
	if err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("app: backup: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	zw := gzip.NewWriter(out)
	tw := tar.NewWriter(zw)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(ManifestFile, int64(len(mj)))); err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	if _, err := tw.Write(mj); err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	for _, f := range m.Files {
		if err := tw.WriteHeader(hdr(f.Name, f.Size)); err != nil {
			return fmt.Errorf("app: backup: %w", err)
		}
		src, err := os.Open(filepath.Join(stage, f.Name)) // #nosec G304 -- a file of the staging dir
		if err != nil {
			return fmt.Errorf("app: backup: %w", err)
		}
		_, err = io.Copy(tw, src)
		_ = src.Close()
		if err != nil {
			return fmt.Errorf("app: backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("app: backup: %w", err)
	}
	return nil
}

// copyFile copies src to the new file dst (0600).
func copyFile(src, dst string) error {
	in, err := os.Open(src) // #nosec G304 -- a data dir file
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- staging dir
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// copyLines copies the complete lines of a file being appended to (a
// JSONL audit log), streaming: the bytes present when the copy starts, cut
// after their last newline, so a record half-written then is left out.
func copyLines(src, dst string) error {
	in, err := os.Open(src) // #nosec G304 -- a data dir file
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a fixed name in the backup's staging dir
	if err != nil {
		return err
	}
	defer out.Close()
	n, err := io.CopyN(out, in, fi.Size())
	if err != nil {
		return err
	}
	// Find the last newline, scanning back in blocks.
	buf := make([]byte, 64<<10)
	for end := n; end > 0; {
		start := max(end-int64(len(buf)), 0)
		b := buf[:end-start]
		if _, err := out.ReadAt(b, start); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return out.Truncate(start + int64(i) + 1)
		}
		end = start
	}
	return out.Truncate(0)
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Archive is the backup to read.
	Archive string
	// DataDir is the data dir to restore into: new, or one without a
	// database (a key file may already be there).
	DataDir string
	// KeyFile, if set, is a copy of the master key file (file source),
	// copied into the data dir as master.key.
	KeyFile string
	// Env opens the vault to check the key (passphrase, keyring, env).
	Env Env
}

// RestoreResult reports what Restore did.
type RestoreResult struct {
	DataDir  string         `json:"data_dir"`
	Manifest BackupManifest `json:"manifest"`
	KeyFile  string         `json:"key_file,omitempty"` // the key file in use (file source)
	// Verified is true when the master key was checked against the
	// restored vault; Note says why not otherwise.
	Verified bool   `json:"verified"`
	Note     string `json:"note,omitempty"`
}

// Restore unpacks a Backup archive into a data dir. Every member is
// checked against the manifest (known name, size, SHA-256; nothing else
// is accepted: no paths, links or extra files) before anything is moved
// into place, and the data dir must not hold a database yet. The master
// key is not in the archive: for the file source a copy of the key file is
// given (KeyFile) or already in the data dir; the restored vault is then
// opened with it, and a key that does not open it undoes the restore.
// Other sources are checked when they can be without a prompt (a
// passphrase file, the keyring, KEYSTILE_MASTER_KEY) and noted otherwise.
func Restore(ctx context.Context, o RestoreOptions) (res RestoreResult, err error) {
	res.DataDir = o.DataDir
	dir := o.DataDir
	if dir == "" {
		return res, errors.New("app: restore: no data dir")
	}
	if _, err := os.Lstat(filepath.Join(dir, DBFile)); err == nil {
		return res, fmt.Errorf("%w (%s exists)", ErrAlreadyInitialized, filepath.Join(dir, DBFile))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { // #nosec G302 -- a directory needs x; 0700 is owner-only
		return res, fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	in, err := os.Open(o.Archive) // #nosec G304 -- the operator's archive
	if err != nil {
		return res, fmt.Errorf("app: restore: %w", err)
	}
	defer in.Close()
	stage, err := os.MkdirTemp(dir, ".restore-")
	if err != nil {
		return res, fmt.Errorf("app: restore: %w", err)
	}
	defer os.RemoveAll(stage)
	if res.Manifest, err = ReadBackup(in, stage); err != nil {
		return res, err
	}

	// The master key, before anything is moved into place.
	local := filepath.Join(dir, KeyFile)
	copied := false
	if o.KeyFile != "" && res.Manifest.MasterKey.Source != masterkey.SourceFile {
		return res, fmt.Errorf("app: restore: a key file was given, but the backed-up vault's master key source is %q", res.Manifest.MasterKey.Source)
	}
	if res.Manifest.MasterKey.Source == masterkey.SourceFile && o.KeyFile != "" {
		switch same, err := sameKey(o.KeyFile, local); {
		case err == nil && !same:
			return res, &KeyFileMismatchError{Recorded: local, Other: o.KeyFile, Why: "--key-file"}
		case err != nil && exists(local):
			return res, fmt.Errorf("app: restore: %w", err)
		case err != nil:
			if err := copyKey(o.KeyFile, local); err != nil {
				return res, err
			}
			copied = true
		}
	}
	var placed []string
	defer func() {
		if err == nil {
			return
		}
		for _, p := range placed {
			_ = os.Remove(p)
		}
		if copied {
			_ = os.Remove(local)
		}
	}()
	for _, f := range res.Manifest.Files {
		dst := filepath.Join(dir, f.Name)
		if _, err := os.Lstat(dst); err == nil {
			return res, fmt.Errorf("app: restore: %s exists; restore into a data dir without it", dst)
		}
		if err := os.Rename(filepath.Join(stage, f.Name), dst); err != nil {
			return res, fmt.Errorf("app: restore: %w", err)
		}
		placed = append(placed, dst)
	}
	if d, err := os.Open(dir); err == nil { // #nosec G304 -- the data dir
		_ = d.Sync()
		_ = d.Close()
	}

	// Check the key against the restored vault.
	cfg, _, err := LoadConfig("", func(string) string { return "" }, dir)
	if err != nil {
		return res, err
	}
	if res.Manifest.MasterKey.Source == masterkey.SourceFile {
		if res.KeyFile, err = ResolveKeyFile(dir, cfg.MasterKey.File, res.Manifest.MasterKey.KeyFile); err != nil {
			return res, err
		}
		if !exists(res.KeyFile) {
			return res, fmt.Errorf("%w: pass --key-file with a copy of the key file the backed-up data dir used (it recorded %q)",
				ErrNoMasterKey, res.Manifest.MasterKey.KeyFile)
		}
	}
	env := o.Env
	env.Prompt = nil // never prompt half-way through a restore
	db, v, oerr := OpenVault(ctx, env, dir, cfg, nil, nil)
	switch {
	case oerr == nil:
		res.Verified = true
		_ = v.Close(ctx)
		_ = db.Close()
	case res.Manifest.MasterKey.Source == masterkey.SourceFile || errors.Is(oerr, vault.ErrWrongMasterKey):
		return res, fmt.Errorf("app: restore: the master key does not open the restored vault: %w", oerr)
	default:
		res.Note = "the master key was not checked (" + oerr.Error() + "); serve will ask for it"
	}
	return res, nil
}

// copyKey copies a key file into the data dir as a new 0600 file.
func copyKey(src, dst string) error {
	b, err := os.ReadFile(src) // #nosec G304 -- the operator's key file
	if err != nil {
		return fmt.Errorf("app: restore: key file: %w", err)
	}
	defer secret.Wipe(b)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- the data dir
	if err != nil {
		return fmt.Errorf("app: restore: key file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("app: restore: key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("app: restore: key file: %w", err)
	}
	return f.Close()
}

// ReadBackup reads a backup archive from r, checks it and writes its
// members into the existing directory dir (0600 each). The manifest must
// come first and name the format; every other member must be a regular
// file the manifest lists, of a known name, once, with the listed size and
// SHA-256; a database member is required. Nothing in the archive can name
// a path outside dir.
func ReadBackup(r io.Reader, dir string) (BackupManifest, error) {
	var m BackupManifest
	bad := func(format string, args ...any) (BackupManifest, error) {
		return BackupManifest{}, fmt.Errorf("app: restore: %w: %s", ErrBackupArchive, fmt.Sprintf(format, args...))
	}
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return bad("not gzip")
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != ManifestFile || h.Typeflag != tar.TypeReg || h.Size <= 0 || h.Size > maxManifestBytes {
		return bad("the first member is not %s", ManifestFile)
	}
	mb, err := io.ReadAll(io.LimitReader(tr, maxManifestBytes))
	if err != nil {
		return bad("manifest: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(mb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil || dec.More() {
		return bad("manifest is not valid")
	}
	if m.Format != BackupFormat {
		return bad("format %q, want %q", m.Format, BackupFormat)
	}
	if m.MasterKey.Included {
		return bad("the manifest says it holds the master key; keystile backups never do")
	}
	want := map[string]BackupFile{}
	for _, f := range m.Files {
		if !backupMember(f.Name) {
			return bad("unknown member %q", f.Name)
		}
		if _, dup := want[f.Name]; dup || f.Size < 0 || f.Size > maxBackupMember || len(f.SHA256) != sha256.Size*2 {
			return bad("member %q listed twice or with a bad size or digest", f.Name)
		}
		want[f.Name] = f
	}
	if _, ok := want[DBFile]; !ok {
		return bad("no %s", DBFile)
	}
	got := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bad("%v", err)
		}
		f, ok := want[h.Name]
		if !ok || got[h.Name] || h.Typeflag != tar.TypeReg || h.Size != f.Size || sparse(h) {
			return bad("member %q is not in the manifest as it is", h.Name)
		}
		got[h.Name] = true
		// f.Name is one of the fixed member names (backupMember): no path.
		if err := extract(tr, filepath.Join(dir, f.Name), f); err != nil { // #nosec G305 -- see above
			return bad("member %q: %v", h.Name, err)
		}
	}
	for name := range want {
		if !got[name] {
			return bad("member %q is missing", name)
		}
	}
	return m, nil
}

// sparse reports a PAX sparse file: archive/tar shows it as a regular
// file whose holes read as zeros, so a few bytes of archive could fill the
// disk. Backups never hold one.
func sparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// extract writes one member, checking its size and digest.
func extract(r io.Reader, dst string, f BackupFile) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a known member name in the staging dir
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(r, f.Size+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
	case n != f.Size:
		err = fmt.Errorf("%d bytes, want %d", n, f.Size)
	case hex.EncodeToString(h.Sum(nil)) != f.SHA256:
		err = errors.New("SHA-256 does not match the manifest")
	}
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}
