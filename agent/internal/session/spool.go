package session

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// The audit spool on disk is a log of records, each framed by its length
// (4 bytes, big-endian). A record is appended, and synced, as it is made:
// in time that grows with the record, not with the records the
// coordinator has not acknowledged yet (a host that runs sessions through
// a day-long outage would otherwise write its whole spool again for each).
// The whole spool is written again, atomically, only when records leave
// it — acknowledged, or dropped from a full spool — which leaves it small.
// A record cut short by a crash ends the log and is cut off; a record in
// it twice (appended while the spool was being written again) is kept
// once.
const (
	spoolFile    = "audit.log"
	oldSpoolFile = "audit.pb" // the whole spool as one AuditBatch, before the log
	// maxSpoolFrame bounds one record on disk: a record's text is
	// bounded (boundRecord) to a few kilobytes.
	maxSpoolFrame = 64 << 10
)

// frame is r as the log holds it.
func frame(r *wire.AuditRecord) ([]byte, error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) > maxSpoolFrame {
		return nil, fmt.Errorf("audit record of %d bytes", len(b))
	}
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b))), b...), nil
}

// readSpool reads the log at path. cut says it ended in a record cut
// short or damaged: the records before it are returned, and good is the
// length of the log they take (the caller cuts the log there).
func readSpool(path string) (recs []*wire.AuditRecord, cut bool, good int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, 0, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	seen := map[string]bool{}
	var head [4]byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return recs, false, good, nil
			}
			return recs, true, good, nil
		}
		n := binary.BigEndian.Uint32(head[:])
		// No record is empty (each has an id): zeros are a file system's
		// unwritten tail after a power loss (XFS leaves them), not a record.
		if n == 0 || n > maxSpoolFrame {
			return recs, true, good, nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return recs, true, good, nil
		}
		var r wire.AuditRecord
		if err := wire.Unmarshal(b, &r); err != nil || r.GetId() == "" {
			return recs, true, good, nil
		}
		good += 4 + int64(n)
		if seen[r.GetId()] {
			continue
		}
		seen[r.GetId()] = true
		recs = append(recs, &r)
	}
}

// writeSpool replaces the log at path with recs, atomically.
func writeSpool(path string, recs []*wire.AuditRecord) error {
	var buf bytes.Buffer
	for _, r := range recs {
		b, err := frame(r)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	return fsutil.WriteFileAtomic(path, buf.Bytes(), 0o600)
}

// appendSpool adds r at the end of the log at path, and syncs it. An
// append that fails (a full disk) is cut off again: bytes of a frame left
// in the middle of the log would end it there for the reader, and the
// records appended after would be lost at the next start.
func appendSpool(path string, r *wire.AuditRecord) error {
	b, err := frame(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if err != nil {
		if terr := f.Truncate(end); terr != nil {
			return fmt.Errorf("%w (and cutting the record off again: %v)", err, terr)
		}
		return err
	}
	return f.Close()
}

// readOldSpool reads a spool written before the log, one AuditBatch.
func readOldSpool(path string) ([]*wire.AuditRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var batch wire.AuditBatch
	if err := wire.Unmarshal(b, &batch); err != nil {
		return nil, err
	}
	return batch.GetRecords(), nil
}
