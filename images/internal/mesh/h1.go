package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The proxy's HTTP/1.1: a message head is parsed in place (slices into the connection's
// read buffer) for the few headers that decide routing and framing, rewritten into the
// outgoing buffer (Via appended, hop-by-hop headers dropped), and the body is passed
// through as framed (Content-Length, chunked, or until close). No per-request allocation,
// and a code path small enough to stay in cache between requests.

// maxHead bounds a request or response line plus headers (nginx's default for a request
// line or header is also 8 KiB); larger is refused. Every connection's read buffer is this
// size, its write buffer half.
const (
	maxHead     = 8 << 10
	writeBuffer = 4 << 10
)

var (
	errHeadTooLarge = errors.New("message head larger than 8 KiB")
	errMalformed    = errors.New("malformed message head")
)

type field struct{ name, value []byte }

// head is one parsed request or response head. Its slices point into the read buffer and
// are valid until the buffer is read again.
type head struct {
	size   int    // bytes of the head, final CRLF CRLF included
	line   []byte // request or status line, without CRLF
	fields []field

	contentLength int64 // -1: none
	chunked       bool
	close         bool // Connection: close, or HTTP/1.0 without keep-alive
	http10        bool
	hopByHop      bool // a header to drop is present
	expect100     bool
	via           []byte // the first Via value
	connection    []byte // the first Connection value (names more headers to drop)
}

// readHead waits for a whole head in br (whose buffer holds at least maxHead bytes) and
// parses it. io.EOF: the peer closed cleanly before a new message.
func readHead(br *bufio.Reader, h *head) error {
	searched := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf[searched:], []byte("\r\n\r\n")); i >= 0 {
			return parseHead(buf[:searched+i+4], h)
		}
		if len(buf) >= maxHead {
			return errHeadTooLarge
		}
		searched = max(0, len(buf)-3)
		if _, err := br.Peek(len(buf) + 1); err != nil { // reads what has arrived, or waits
			switch {
			case errors.Is(err, io.EOF) && len(buf) == 0:
				return io.EOF
			case errors.Is(err, io.EOF):
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

func parseHead(buf []byte, h *head) error {
	*h = head{size: len(buf), contentLength: -1, fields: h.fields[:0]}
	end := bytes.Index(buf, []byte("\r\n"))
	h.line = buf[:end]
	if len(h.line) == 0 {
		return errMalformed
	}
	rest := buf[end+2 : len(buf)-2]
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return errMalformed
		}
		line := rest[:i]
		rest = rest[i+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return errMalformed // obsolete line folding and nameless fields are refused (RFC 9112 5.2)
		}
		f := field{name: line[:colon], value: bytes.TrimSpace(line[colon+1:])}
		if bytes.ContainsAny(f.name, " \t") {
			return errMalformed
		}
		h.fields = append(h.fields, f)
		if err := h.note(f); err != nil {
			return err
		}
	}
	if h.chunked {
		if h.contentLength >= 0 {
			h.hopByHop = true // Content-Length is dropped: chunked frames the body (RFC 9112 6.3)
		}
		h.contentLength = -1
	}
	return nil
}

// note records what a field means for routing and framing.
func (h *head) note(f field) error {
	switch len(f.name) {
	case 3:
		if bytes.EqualFold(f.name, []byte("Via")) && h.via == nil {
			h.via = f.value
		}
	case 14:
		if bytes.EqualFold(f.name, []byte("Content-Length")) {
			n, err := strconv.ParseInt(string(f.value), 10, 64)
			if err != nil || n < 0 || (h.contentLength >= 0 && h.contentLength != n) {
				return errMalformed
			}
			h.contentLength = n
		}
	case 17:
		if bytes.EqualFold(f.name, []byte("Transfer-Encoding")) {
			if !hasToken(f.value, "chunked") {
				return fmt.Errorf("%w: transfer-coding %q", errMalformed, f.value)
			}
			h.chunked = true
		}
	case 6:
		if bytes.EqualFold(f.name, []byte("Expect")) && hasToken(f.value, "100-continue") {
			h.expect100 = true
		}
	}
	if isHopByHop(f.name) {
		h.hopByHop = true
		if len(f.name) == 10 && bytes.EqualFold(f.name, []byte("Connection")) {
			if h.connection == nil {
				h.connection = f.value
			}
			if hasToken(f.value, "close") {
				h.close = true
			}
		}
	}
	return nil
}

// finish settles HTTP/1.0 keep-alive once the version is known.
func (h *head) finish(http10 bool) {
	h.http10 = http10
	if http10 && !hasToken(h.connection, "keep-alive") {
		h.close = true
	}
}

// get returns the first value of a field.
func (h *head) get(name string) []byte {
	for _, f := range h.fields {
		if len(f.name) == len(name) && bytes.EqualFold(f.name, []byte(name)) {
			return f.value
		}
	}
	return nil
}

// hopByHop are the headers that describe one connection, not the message (RFC 9110 7.6.1),
// plus Proxy-Connection; Connection also names more. Transfer-Encoding is passed on with
// the body it frames.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

func isHopByHop(name []byte) bool {
	switch len(name) {
	case 2, 7, 10, 16, 18, 19: // the lengths of the names above
		for _, h := range hopByHop {
			if len(h) == len(name) && bytes.EqualFold(name, []byte(h)) {
				return true
			}
		}
	}
	return false
}

// hasToken: is token in a comma-separated list (case-insensitive)?
func hasToken(list []byte, token string) bool {
	for len(list) > 0 {
		var item []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			item, list = list, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(item), []byte(token)) {
			return true
		}
	}
	return false
}

// dropped: a field not to pass on: hop-by-hop, named by Connection, or one of skip.
func (h *head) dropped(f field, skip ...string) bool {
	for _, s := range skip {
		if len(s) == len(f.name) && bytes.EqualFold(f.name, []byte(s)) {
			return true
		}
	}
	if !h.hopByHop {
		return false
	}
	if h.chunked && len(f.name) == 14 && bytes.EqualFold(f.name, []byte("Content-Length")) {
		return true
	}
	return isHopByHop(f.name) || (h.connection != nil && hasToken(h.connection, string(f.name)))
}

// writeFields writes the head's fields except the dropped ones.
func (h *head) writeFields(w *bufio.Writer, skip ...string) {
	for _, f := range h.fields {
		if h.dropped(f, skip...) {
			continue
		}
		w.Write(f.name)
		w.WriteString(": ")
		w.Write(f.value)
		w.WriteString("\r\n")
	}
}

// writeVia writes the Via field: the first one received, then this proxy (RFC 9110 7.6.3).
func writeVia(w *bufio.Writer, existing, entry []byte) {
	w.WriteString("Via: ")
	if len(existing) > 0 {
		w.Write(existing)
		w.WriteString(", ")
	}
	w.Write(entry)
	w.WriteString("\r\n")
}

// copyBody passes a message body from src to dst as framed by h: Content-Length bytes, the
// chunked coding as it is (chunks, trailers), or — untilEOF — everything until the peer
// closes.
func copyBody(dst *bufio.Writer, src *bufio.Reader, h *head, untilEOF bool) error {
	switch {
	case h.chunked:
		return copyChunked(dst, src)
	case h.contentLength > 0:
		return copyN(dst, src, h.contentLength)
	case untilEOF && h.contentLength < 0:
		_, err := src.WriteTo(dst)
		return err
	}
	return nil
}

func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) error {
	for n > 0 {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := src.Buffered()
		if int64(k) > n {
			k = int(n)
		}
		b, _ := src.Peek(k)
		if _, err := dst.Write(b); err != nil {
			return err
		}
		src.Discard(k)
		n -= int64(k)
	}
	return nil
}

// copyLine copies one CRLF-terminated line and returns it (valid until the next read).
func copyLine(dst *bufio.Writer, src *bufio.Reader) ([]byte, error) {
	line, err := src.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err // bufio.ErrBufferFull: a chunk line longer than the buffer
	}
	if _, err := dst.Write(line); err != nil {
		return nil, err
	}
	return line, nil
}

func copyChunked(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		line, err := copyLine(dst, src)
		if err != nil {
			return err
		}
		sizeText := bytes.TrimSpace(line)
		if i := bytes.IndexByte(sizeText, ';'); i >= 0 {
			sizeText = bytes.TrimSpace(sizeText[:i])
		}
		size, err := strconv.ParseInt(string(sizeText), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, sizeText)
		}
		if size == 0 {
			for { // trailer fields, then the final empty line
				line, err := copyLine(dst, src)
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(line)) == 0 {
					return nil
				}
			}
		}
		if err := copyN(dst, src, size+2); err != nil { // the data and its CRLF
			return err
		}
	}
}

// statusCode reads the code from a status line ("HTTP/1.1 200 OK").
func statusCode(line []byte) (int, bool) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(line[9:12]))
	return code, err == nil && code >= 100 && code <= 999
}

// bodyless: a response that has no body whatever its headers say (RFC 9112 6.3).
func bodyless(method []byte, code int) bool {
	return bytes.Equal(method, []byte("HEAD")) || code/100 == 1 || code == 204 || code == 304
}
