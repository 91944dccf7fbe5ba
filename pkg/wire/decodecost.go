package wire

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Decoding multiplies memory: an empty message inside a repeated field is
// two bytes on the wire and a Go struct of 100–370 bytes, with a pointer to
// it, once decoded. A frame of MaxMessageSize made of nothing else would
// cost the decoder over half a gigabyte, whatever budget counted its bytes
// on the wire. So every message from the network or a file is weighed
// before it is decoded: DecodeCost walks the wire format against the
// message's descriptor and adds up what decoding will allocate, and
// Unmarshal refuses bytes that would cost more than
// decodeCostFactor × their size plus decodeCostFloor, and never more than
// maxDecodeCost.
//
// Real messages stay well inside: a check-in of item reports with ids as
// short as "package:a" costs under 8× its size, and most cost 2–4×.
const (
	decodeCostFactor = 16
	decodeCostFloor  = 64 << 10
	maxDecodeCost    = 8 * MaxMessageSize
	// maxDecodeDepth bounds how deep the walk nests. Outpost's messages
	// nest a few levels; the protobuf decoder's own limit is 10,000.
	maxDecodeDepth = 64
)

// ErrDecodeCost is returned for bytes that would cost more to decode than
// their size allows.
var ErrDecodeCost = errors.New("message would take too much memory to decode")

// Unmarshal decodes b into m, as proto.Unmarshal does, after checking that
// decoding costs no more than b's size allows (ErrDecodeCost). Use it for
// every message that comes from the network or a file.
func Unmarshal(b []byte, m proto.Message) error {
	limit := min(int64(len(b))*decodeCostFactor+decodeCostFloor, maxDecodeCost)
	cost, err := DecodeCost(b, m.ProtoReflect().Descriptor(), limit)
	if err != nil {
		return err
	}
	if cost > limit {
		return fmt.Errorf("%w: %d bytes would take more than %d", ErrDecodeCost, len(b), limit)
	}
	return proto.Unmarshal(b, m)
}

// DecodeCost estimates, from above, the bytes that decoding b as a message
// of descriptor md allocates. It stops counting once the cost passes stop
// (the result is then more than stop, not the whole cost). Malformed bytes
// are left for the decoder to refuse: their cost is what was counted up to
// the fault.
func DecodeCost(b []byte, md protoreflect.MessageDescriptor, stop int64) (int64, error) {
	p := planFor(md)
	w := costWalk{stop: stop, cost: p.size}
	if err := w.message(b, p, 0); err != nil {
		return 0, err
	}
	return w.cost, nil
}

type costWalk struct {
	cost, stop int64
}

// Costs beyond a field's bytes, in the Go the generator writes: a slice
// element is a pointer or a header, and the arrays that append outgrew are
// garbage the decoder made too (growing by a quarter at a time, a long
// slice allocates about five times its final array on the way); a oneof
// member is boxed in a wrapper struct; a map entry costs a bucket slot and
// its share of the table.
const (
	growth      = 6
	slotCost    = growth * 8
	stringCost  = growth * 16
	bytesCost   = growth * 24
	oneofCost   = 16
	mapItemCost = 64
	// roundCost is an allocation's rounding up to its size class.
	roundCost = 8
)

func (w *costWalk) message(b []byte, p *costPlan, depth int) error {
	if depth > maxDecodeDepth {
		return fmt.Errorf("%w: nested more than %d deep", ErrDecodeCost, maxDecodeDepth)
	}
	for len(b) > 0 && w.cost <= w.stop {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		f := p.field(num)
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil
			}
			b = b[n:]
			switch {
			case f == nil:
				w.cost += int64(n) + 8 // kept as unknown bytes, tag and all
			case f.list:
				w.cost += slotCost
			case f.oneof:
				w.cost += oneofCost
			}
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if f == nil {
			w.cost += int64(len(v)) + 8
			continue
		}
		if f.oneof {
			w.cost += oneofCost
		}
		switch f.shape {
		case shapeMap:
			w.cost += mapItemCost
			if err := w.message(v, f.sub, depth+1); err != nil {
				return err
			}
		case shapeMessage:
			w.cost += f.sub.size
			if f.list {
				w.cost += slotCost
			}
			if err := w.message(v, f.sub, depth+1); err != nil {
				return err
			}
		case shapeString:
			w.cost += int64(len(v)) + roundCost
			if f.list {
				w.cost += stringCost
			}
		case shapeBytes:
			w.cost += int64(len(v)) + roundCost
			if f.list {
				w.cost += bytesCost
			}
		default:
			if f.list {
				// Packed scalars: at most one element per byte, eight bytes each.
				w.cost += int64(len(v)) * 8
			} else {
				w.cost += int64(len(v))
			}
		}
	}
	return nil
}

// A costPlan is what the walk needs of a message's descriptor, looked up
// once: asking the descriptor field by field took as long as the walk.
type costPlan struct {
	size  int64 // the decoded Go struct
	low   []*fieldCost
	other map[protowire.Number]*fieldCost
}

type fieldCost struct {
	list, oneof bool
	shape       uint8
	sub         *costPlan // message and map fields
}

const (
	shapeScalar = iota
	shapeMessage
	shapeMap
	shapeString
	shapeBytes
)

func (p *costPlan) field(num protowire.Number) *fieldCost {
	if int(num) < len(p.low) {
		return p.low[num]
	}
	return p.other[num]
}

var (
	plansMu sync.Mutex
	plans   sync.Map // protoreflect.FullName → *costPlan
)

func planFor(md protoreflect.MessageDescriptor) *costPlan {
	if p, ok := plans.Load(md.FullName()); ok {
		return p.(*costPlan)
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	building := map[protoreflect.FullName]*costPlan{}
	p := buildPlan(md, building)
	for name, bp := range building {
		plans.LoadOrStore(name, bp)
	}
	return p
}

// buildPlan makes md's plan and those of the messages it holds; building
// holds the ones made so far, so that a message that holds itself ends.
func buildPlan(md protoreflect.MessageDescriptor, building map[protoreflect.FullName]*costPlan) *costPlan {
	if p, ok := plans.Load(md.FullName()); ok {
		return p.(*costPlan)
	}
	if p, ok := building[md.FullName()]; ok {
		return p
	}
	p := &costPlan{size: structSize(md), other: map[protowire.Number]*fieldCost{}}
	building[md.FullName()] = p
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := &fieldCost{list: fd.IsList(), oneof: fd.ContainingOneof() != nil}
		switch {
		case fd.IsMap():
			f.shape, f.sub = shapeMap, buildPlan(fd.Message(), building)
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			f.shape, f.sub = shapeMessage, buildPlan(fd.Message(), building)
		case fd.Kind() == protoreflect.StringKind:
			f.shape = shapeString
		case fd.Kind() == protoreflect.BytesKind:
			f.shape = shapeBytes
		}
		if num := fd.Number(); num < 64 {
			for len(p.low) <= int(num) {
				p.low = append(p.low, nil)
			}
			p.low[num] = f
		} else {
			p.other[num] = f
		}
	}
	return p
}

// structSize is what one message of md costs decoded on its own: its
// generated Go struct (from the registry), or a generous guess for a
// message the registry does not hold.
func structSize(md protoreflect.MessageDescriptor) int64 {
	size := int64(64 + 24*md.Fields().Len())
	if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		if t := reflect.TypeOf(mt.New().Interface()); t.Kind() == reflect.Pointer {
			size = int64(t.Elem().Size())
		}
	}
	return size
}
