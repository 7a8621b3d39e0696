package sink

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// collectorJSON is a request shaped as the collector's otlphttp exporter sends it with
// `encoding: json` (pdata's JSON: lowerCamelCase, 64-bit numbers as strings, empty trace
// ids), from a filelog receiver with the container parser: resource and record attributes
// around each body, which is the app's own line.
func collectorJSON(pod string, seqs ...int) []byte {
	var recs []string
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, seq := range seqs {
		body, _ := json.Marshal(string(line(pod, "i1", seq, ts)))
		recs = append(recs, fmt.Sprintf(`{"timeUnixNano":"1767225600000000000","observedTimeUnixNano":"1767225600100000000",`+
			`"body":{"stringValue":%s},"attributes":[{"key":"log.iostream","value":{"stringValue":"stdout"}},`+
			`{"key":"log.file.path","value":{"stringValue":"/var/log/pods/ns_%s_uid/app/0.log"}}],"traceId":"","spanId":""}`, body, pod))
	}
	return []byte(fmt.Sprintf(`{"resourceLogs":[{"resource":{"attributes":[`+
		`{"key":"k8s.pod.name","value":{"stringValue":%q}},{"key":"k8s.namespace.name","value":{"stringValue":"ns"}},`+
		`{"key":"k8s.container.restart_count","value":{"stringValue":"0"}}]},`+
		`"scopeLogs":[{"scope":{},"logRecords":[%s]}]}]}`, pod, strings.Join(recs, ",")))
}

func post(t *testing.T, h http.Handler, contentType, encoding string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, _ = gz.Write(b)
	_ = gz.Close()
	return buf.Bytes()
}

func TestOTLPJSONCountedLikeOurLines(t *testing.T) {
	s := New("")
	h := OTLPLogsHandler(s)
	if rec := post(t, h, "application/json", "gzip", gzipped(collectorJSON("a", 1, 2, 4))); rec.Code != http.StatusOK || rec.Body.String() != "{}" {
		t.Fatalf("answer %d %q", rec.Code, rec.Body.String())
	}
	// A resend after a crash: 4 again is a duplicate, 3 fills the gap.
	if rec := post(t, h, "application/json; charset=utf-8", "", collectorJSON("a", 3, 4, 5)); rec.Code != http.StatusOK {
		t.Fatalf("answer %d %q", rec.Code, rec.Body.String())
	}
	snap := s.Snapshot()
	a := snap.Sources["a"]
	if a.Received != 6 || a.Unique != 5 || a.Missing != 0 || a.Duplicated != 1 {
		t.Fatalf("pod a: %+v", a)
	}
	if snap.Batches != 2 || snap.MaxBatch != 3 || snap.Unparsed != 0 {
		t.Fatalf("snapshot: %+v", snap)
	}
}

func TestOTLPMalformedIsRefusedAndNotCounted(t *testing.T) {
	s := New("")
	h := OTLPLogsHandler(s)
	for _, c := range []struct {
		name, ctype, enc string
		body             []byte
		want             int
	}{
		{"json syntax", "application/json", "", []byte(`{"resourceLogs":[{"scopeLogs":[`), http.StatusBadRequest},
		{"json shape", "application/json", "", []byte(`{"resourceLogs":{"scopeLogs":1}}`), http.StatusBadRequest},
		{"trailing garbage", "application/json", "", append(collectorJSON("a", 1), "x"...), http.StatusBadRequest},
		{"bad gzip", "application/json", "gzip", collectorJSON("a", 1), http.StatusBadRequest},
		{"truncated protobuf", "application/x-protobuf", "", protoRequest("a", 1, 2)[:20], http.StatusBadRequest},
		{"ndjson", "application/x-ndjson", "", line("a", "i1", 1, time.Now()), http.StatusUnsupportedMediaType},
		{"zstd", "application/json", "zstd", collectorJSON("a", 1), http.StatusUnsupportedMediaType},
	} {
		if rec := post(t, h, c.ctype, c.enc, c.body); rec.Code != c.want {
			t.Errorf("%s: answer %d %q, want %d", c.name, rec.Code, rec.Body.String(), c.want)
		}
	}
	if snap := s.Snapshot(); snap.Total.Received != 0 || snap.Batches != 0 || snap.Unparsed != 0 {
		t.Fatalf("a refused request was counted: %+v", snap)
	}
}

func TestOTLPNonStringBodyIsUnparsed(t *testing.T) {
	s := New("")
	body := []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"kvlistValue":{"values":[]}}},{}]}]}]}`)
	if rec := post(t, OTLPLogsHandler(s), "application/json", "", body); rec.Code != http.StatusOK {
		t.Fatalf("answer %d", rec.Code)
	}
	if snap := s.Snapshot(); snap.Unparsed != 2 || snap.Total.Received != 0 {
		t.Fatalf("snapshot: %+v", snap)
	}
}

// A minimal protobuf encoder for the test: only what the request needs.
func pbLen(num int, value []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(num)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(value)))
	return append(b, value...)
}

func protoRequest(pod string, seqs ...int) []byte {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []byte
	for _, seq := range seqs {
		var rec []byte
		rec = append(rec, 0x09) // time_unix_nano, fixed64
		rec = binary.LittleEndian.AppendUint64(rec, uint64(ts.UnixNano()))
		rec = append(rec, 0x10, 0x09)                                      // severity_number 9, varint
		rec = append(rec, pbLen(3, []byte("INFO"))...)                     // severity_text
		rec = append(rec, pbLen(5, pbLen(1, line(pod, "i1", seq, ts)))...) // body.string_value
		rec = append(rec, pbLen(6, append(pbLen(1, []byte("log.iostream")), pbLen(2, pbLen(1, []byte("stdout")))...))...)
		rec = append(rec, 0x45, 0, 0, 0, 0) // flags, fixed32
		recs = append(recs, pbLen(2, rec)...)
	}
	resource := pbLen(1, pbLen(1, append(pbLen(1, []byte("k8s.pod.name")), pbLen(2, pbLen(1, []byte(pod)))...)))
	scopeLogs := pbLen(2, append(pbLen(1, pbLen(1, []byte("scope"))), recs...))
	return pbLen(1, append(resource, scopeLogs...))
}

func TestOTLPProtobufCountedLikeOurLines(t *testing.T) {
	s := New("")
	h := OTLPLogsHandler(s)
	rec := post(t, h, "application/x-protobuf", "gzip", gzipped(protoRequest("p", 1, 2, 3)))
	if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("answer %d %q %q", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
	}
	post(t, h, "application/x-protobuf", "", protoRequest("p", 3, 5))
	p := s.Snapshot().Sources["p"]
	if p.Received != 5 || p.Unique != 4 || p.Missing != 1 || p.Duplicated != 1 {
		t.Fatalf("pod p: %+v", p)
	}
}

func TestOTLPProtobufAndJSONAgree(t *testing.T) {
	fromJSON, err := DecodeOTLPLogsJSON(collectorJSON("q", 7, 8))
	if err != nil {
		t.Fatal(err)
	}
	fromProto, err := DecodeOTLPLogsProto(protoRequest("q", 7, 8))
	if err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != 2 || len(fromProto) != 2 || !bytes.Equal(fromJSON[0], fromProto[0]) || !bytes.Equal(fromJSON[1], fromProto[1]) {
		t.Fatalf("json %q, proto %q", fromJSON, fromProto)
	}
}

func emptyRecords(n int) []byte {
	return []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[` + strings.TrimSuffix(strings.Repeat("{},", n), ",") + `]}]}]}`)
}

func TestOTLPBombsAreRefusedBeforeTheyCostMemory(t *testing.T) {
	s := New("")
	h := OTLPLogsHandler(s)
	// A small gzip that expands past the limit: refused while it is read, nothing counted.
	bomb := gzipped(emptyRecords(2_000_000))
	if len(bomb) > 64<<10 {
		t.Fatalf("the bomb is %d bytes: not small", len(bomb))
	}
	if rec := post(t, h, "application/json", "gzip", bomb); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip bomb: answer %d %q", rec.Code, rec.Body.String())
	}
	// Under the byte limit but too many records in one request.
	if rec := post(t, h, "application/json", "", emptyRecords(maxOTLPRecords+1)); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("too many records: answer %d %q", rec.Code, rec.Body.String())
	}
	if snap := s.Snapshot(); snap.Batches != 0 || snap.Unparsed != 0 {
		t.Fatalf("a refused request was counted: %+v", snap)
	}
}
