package sink

// OTLP/HTTP logs (POST /v1/logs) for agents that speak OpenTelemetry, such as the
// OpenTelemetry Collector's otlphttp exporter. Each log record's body is counted exactly as
// a line from our own agent: the body is the app's numbered JSON line (after the
// collector's container parser, in node mode), so Stats.Add sees the same bytes either way.
//
// Both encodings are read without the OTLP libraries, to keep the data plane module small:
// JSON with encoding/json (only the fields on the path to a record's body), protobuf with a
// small wire-format walker (the same path, by field number). gzip bodies (the exporter's
// default compression) are unpacked; any other Content-Encoding is refused with 415.

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
)

const (
	otlpJSON  = "application/json"
	otlpProto = "application/x-protobuf"
	// maxOTLPBody bounds one request after decompression as well as before: a collector's
	// batch is well under 1 MiB, and a small gzip must not expand past the sink's memory.
	maxOTLPBody = 4 << 20
	// maxOTLPRecords bounds the records of one request (empty records cost memory too).
	maxOTLPRecords = 100000
)

// Record bodies that are not strings (a map, a number, ...) are returned as nil, so Stats
// counts them as unparsed rather than dropping them silently.

type otlpJSONRequest struct {
	ResourceLogs []struct {
		ScopeLogs []struct {
			LogRecords []struct {
				Body *struct {
					StringValue *string `json:"stringValue"`
				} `json:"body"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

// DecodeOTLPLogsJSON returns every log record's string body, in order.
func DecodeOTLPLogsJSON(data []byte) ([][]byte, error) {
	var req otlpJSONRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("not an OTLP JSON logs request: %w", err)
	}
	var bodies [][]byte
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				if lr.Body != nil && lr.Body.StringValue != nil {
					bodies = append(bodies, []byte(*lr.Body.StringValue))
				} else {
					bodies = append(bodies, nil)
				}
			}
		}
	}
	return bodies, nil
}

// Field numbers on the path ExportLogsServiceRequest.resource_logs -> ResourceLogs.scope_logs
// -> ScopeLogs.log_records -> LogRecord.body -> AnyValue.string_value (opentelemetry-proto,
// logs/v1 and common/v1).
const (
	pbResourceLogs = 1
	pbScopeLogs    = 2
	pbLogRecords   = 2
	pbBody         = 5
	pbStringValue  = 1
	pbBytesValue   = 7
)

// DecodeOTLPLogsProto returns every log record's string body, in order.
func DecodeOTLPLogsProto(data []byte) ([][]byte, error) {
	var bodies [][]byte
	err := pbFields(data, func(num int, rl []byte) error {
		if num != pbResourceLogs {
			return nil
		}
		return pbFields(rl, func(num int, sl []byte) error {
			if num != pbScopeLogs {
				return nil
			}
			return pbFields(sl, func(num int, rec []byte) error {
				if num != pbLogRecords {
					return nil
				}
				var body []byte
				err := pbFields(rec, func(num int, anyValue []byte) error {
					if num != pbBody {
						return nil
					}
					body = nil // the last occurrence wins, as in protobuf
					return pbFields(anyValue, func(num int, v []byte) error {
						if num == pbStringValue || num == pbBytesValue {
							body = v
						}
						return nil
					})
				})
				bodies = append(bodies, body)
				return err
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("not an OTLP protobuf logs request: %w", err)
	}
	return bodies, nil
}

var errTruncated = errors.New("truncated field")

// pbFields walks one message's fields and calls fn with each length-delimited field's
// number and bytes; varint and fixed-width fields are checked and skipped.
func pbFields(b []byte, fn func(num int, value []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errTruncated
		}
		b = b[n:]
		num, wireType := int(key>>3), key&7
		if num == 0 {
			return errors.New("field number 0")
		}
		switch wireType {
		case 0: // varint
			if _, n = binary.Uvarint(b); n <= 0 {
				return errTruncated
			}
			b = b[n:]
		case 1: // fixed64
			if len(b) < 8 {
				return errTruncated
			}
			b = b[8:]
		case 5: // fixed32
			if len(b) < 4 {
				return errTruncated
			}
			b = b[4:]
		case 2: // length-delimited
			size, n := binary.Uvarint(b)
			if n <= 0 || size > uint64(len(b)-n) {
				return errTruncated
			}
			value := b[n : n+int(size)]
			b = b[n+int(size):]
			if err := fn(num, value); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unsupported wire type %d", wireType)
		}
	}
	return nil
}

// OTLPLogsHandler answers POST /v1/logs: 200 with an empty ExportLogsServiceResponse in the
// request's encoding once every record is counted, 400 for a body that is not an OTLP logs
// request (nothing of it is counted), 415 for an encoding it cannot read.
func OTLPLogsHandler(stats *Stats) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mediaType != otlpJSON && mediaType != otlpProto {
			http.Error(w, fmt.Sprintf("unsupported Content-Type %q: want %s or %s", mediaType, otlpJSON, otlpProto), http.StatusUnsupportedMediaType)
			return
		}
		var body io.Reader = http.MaxBytesReader(w, r.Body, maxOTLPBody)
		switch enc := r.Header.Get("Content-Encoding"); enc {
		case "", "identity":
		case "gzip":
			gz, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
				return
			}
			defer gz.Close()
			body = io.LimitReader(gz, maxOTLPBody+1)
		default:
			http.Error(w, fmt.Sprintf("unsupported Content-Encoding %q: want gzip or none", enc), http.StatusUnsupportedMediaType)
			return
		}
		data, err := io.ReadAll(body)
		var tooLarge *http.MaxBytesError
		if (err == nil && len(data) > maxOTLPBody) || errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("body over %d bytes (after decompression)", maxOTLPBody), http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		var bodies [][]byte
		if mediaType == otlpJSON {
			bodies, err = DecodeOTLPLogsJSON(data)
		} else {
			bodies, err = DecodeOTLPLogsProto(data)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(bodies) > maxOTLPRecords {
			http.Error(w, fmt.Sprintf("%d log records in one request, over %d", len(bodies), maxOTLPRecords), http.StatusRequestEntityTooLarge)
			return
		}
		for _, b := range bodies {
			stats.Add(b)
		}
		stats.BatchDone(len(bodies))
		w.Header().Set("Content-Type", mediaType)
		w.WriteHeader(http.StatusOK)
		if mediaType == otlpJSON {
			_, _ = w.Write([]byte("{}"))
		}
	}
}
