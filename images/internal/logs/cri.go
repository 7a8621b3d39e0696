// Package logs is the log agent's reading side: tail files by inode through rotation, parse
// the CRI log format (partial P lines joined up to their F line), and checkpoint positions
// so a replaced agent resumes exactly where the old one stopped.
package logs

import (
	"bytes"
	"fmt"
)

// CRILine is one line of a CRI container log: "<RFC3339Nano> <stream> <P|F> <content>".
type CRILine struct {
	Time    []byte
	Stream  []byte
	Partial bool
	Content []byte
}

// ParseCRI splits one CRI log line (without its newline).
func ParseCRI(line []byte) (CRILine, error) {
	parts := bytes.SplitN(line, []byte(" "), 4)
	if len(parts) < 3 {
		return CRILine{}, fmt.Errorf("not a CRI log line: %q", truncate(line))
	}
	l := CRILine{Time: parts[0], Stream: parts[1]}
	switch string(parts[2]) {
	case "P":
		l.Partial = true
	case "F":
	default:
		// Older runtimes wrote no tag: the rest is all content.
		l.Content = bytes.Join(parts[2:], []byte(" "))
		return l, nil
	}
	if len(parts) == 4 {
		l.Content = parts[3]
	}
	return l, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
