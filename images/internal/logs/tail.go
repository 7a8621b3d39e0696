package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Format of the files being tailed.
type Format int

const (
	Raw Format = iota // one record per line
	CRI               // container runtime log files: partial lines are joined
)

// Position is where reading of one file stopped: everything before Offset has been shipped.
type Position struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// Record is one complete log record and the file it came from.
type Record struct {
	Path string
	Data []byte
}

type file struct {
	path   string
	inode  uint64
	offset int64 // first byte not yet turned into a record
	f      *os.File
	old    bool // rotated away: read to its end, then drop
}

// Tailer reads new records from every file matching its globs.
type Tailer struct {
	Globs  []string
	Format Format
	files  map[uint64]*file // by inode: a renamed (rotated) file is still the same file
	buf    []byte
}

// NewTailer starts from the checkpointed positions; files with no position start at 0.
func NewTailer(globs []string, format Format, start map[string]Position) *Tailer {
	t := &Tailer{Globs: globs, Format: format, files: map[uint64]*file{}, buf: make([]byte, 256*1024)}
	for path, pos := range start {
		t.resume(path, pos)
	}
	return t
}

// resume reopens a checkpointed file. If the path now holds another inode, the old file was
// rotated while no agent ran: find it among its rotated siblings (path.*) and finish it.
func (t *Tailer) resume(path string, pos Position) {
	candidates := []string{path}
	siblings, _ := filepath.Glob(path + ".*")
	candidates = append(candidates, siblings...)
	for _, c := range candidates {
		if strings.HasSuffix(c, ".gz") {
			continue
		}
		if ino, ok := inodeOf(c); ok && ino == pos.Inode {
			f, err := os.Open(c)
			if err != nil {
				return
			}
			t.files[ino] = &file{path: path, inode: ino, offset: pos.Offset, f: f, old: c != path}
			return
		}
	}
}

func inodeOf(path string) (uint64, bool) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Ino, true
}

// discover opens files that appeared and marks rotated-away ones as old.
func (t *Tailer) discover() {
	current := map[string]uint64{}
	for _, g := range t.Globs {
		matches, _ := filepath.Glob(g)
		for _, path := range matches {
			if ino, ok := inodeOf(path); ok {
				current[path] = ino
			}
		}
	}
	for _, f := range t.files {
		if ino, ok := current[f.path]; !ok || ino != f.inode {
			f.old = true
		}
	}
	for path, ino := range current {
		if _, known := t.files[ino]; known {
			continue
		}
		fh, err := os.Open(path)
		if err != nil {
			continue
		}
		t.files[ino] = &file{path: path, inode: ino, f: fh}
	}
}

// Poll returns up to max new complete records. Old (rotated) files are read first, so a
// file's lines keep their order across a rotation.
func (t *Tailer) Poll(max int) ([]Record, error) {
	t.discover()
	order := make([]*file, 0, len(t.files))
	for _, f := range t.files {
		order = append(order, f)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].old != order[j].old {
			return order[i].old
		}
		return order[i].path < order[j].path
	})
	var out []Record
	for _, f := range order {
		if len(out) >= max {
			break
		}
		recs, eof, err := t.read(f, max-len(out))
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
		if f.old && eof {
			f.f.Close()
			delete(t.files, f.inode)
		}
	}
	return out, nil
}

// read turns complete lines from f's offset into records; a CRI partial sequence counts
// only once its final F line is there, so the offset never points into the middle of one.
// atEOF reports that everything complete up to the file's current end has been read.
func (t *Tailer) read(f *file, max int) (recs []Record, atEOF bool, err error) {
	for len(recs) < max {
		n, rerr := f.f.ReadAt(t.buf, f.offset)
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return recs, false, rerr
		}
		chunk := t.buf[:n]
		consumed, pos := 0, 0
		var partial []byte
		for len(recs) < max {
			nl := bytes.IndexByte(chunk[pos:], '\n')
			if nl < 0 {
				break
			}
			line := chunk[pos : pos+nl]
			pos += nl + 1
			if t.Format == Raw {
				recs = append(recs, Record{Path: f.path, Data: append([]byte(nil), line...)})
				consumed = pos
				continue
			}
			cri, perr := ParseCRI(line)
			if perr != nil {
				consumed = pos // skip what cannot be parsed rather than stall forever
				continue
			}
			partial = append(partial, cri.Content...)
			if cri.Partial {
				continue
			}
			recs = append(recs, Record{Path: f.path, Data: partial})
			partial = nil
			consumed = pos
		}
		if consumed == 0 && n == len(t.buf) {
			// One record longer than the buffer: ship it cut rather than stall on it.
			recs = append(recs, Record{Path: f.path, Data: append([]byte(nil), chunk...)})
			consumed = n
		}
		f.offset += int64(consumed)
		if consumed == 0 || (n < len(t.buf) && consumed == n) {
			return recs, true, nil
		}
		if n < len(t.buf) && len(recs) < max {
			return recs, true, nil // only an incomplete record is left
		}
	}
	return recs, false, nil
}

// Positions is what to checkpoint: per path, the file's inode and shipped offset.
func (t *Tailer) Positions() map[string]Position {
	out := map[string]Position{}
	for _, f := range t.files {
		// A rotated file still being finished keeps its old path's entry until done, unless
		// the new file at that path has progressed; the old one wins while it has data.
		if prev, ok := out[f.path]; ok && !f.old && prev.Inode != f.inode {
			continue
		}
		out[f.path] = Position{Inode: f.inode, Offset: f.offset}
	}
	return out
}

// Close closes every open file.
func (t *Tailer) Close() {
	for _, f := range t.files {
		f.f.Close()
	}
}

// LoadCheckpoint reads positions; a missing file means "start from the beginning".
func LoadCheckpoint(path string) (map[string]Position, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]Position{}, nil
	}
	if err != nil {
		return nil, err
	}
	positions := map[string]Position{}
	if err := json.Unmarshal(data, &positions); err != nil {
		return nil, err
	}
	return positions, nil
}

// SaveCheckpoint writes positions atomically (write, fsync, rename).
func SaveCheckpoint(path string, positions map[string]Position) error {
	data, err := json.Marshal(positions)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
