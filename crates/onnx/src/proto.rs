//! The protobuf wire format, as much of it as an ONNX model needs, and the ONNX messages
//! written with it.
//!
//! A protobuf message is a sequence of fields; each field is a key, then a value:
//!
//! ```text
//! key    = varint(field_number << 3 | wire_type)
//! varint = 7 bits per byte, least significant group first, high bit set on every byte but the last
//! wire type 0  varint            int64, int32, enum (negative numbers as 10-byte two's complement)
//! wire type 2  varint(len) bytes  string, bytes, a nested message, a packed repeated scalar
//! wire type 5  4 bytes LE         float
//! ```
//!
//! A nested message is written into its own buffer first, so its length is known when its
//! key and length prefix are written. Field numbers are those of `onnx.proto3` (ONNX 1.12+);
//! only the fields written here are listed, and every one of them is written in field
//! order. Decoding is not needed: the tests read the bytes back with an independent ONNX
//! runtime.

/// Protobuf wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// A buffer that protobuf fields are appended to.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u64) {
        self.varint(((field as u64) << 3) | wire);
    }

    /// An `int64`, `int32` or enum field (negative values as their 64-bit two's complement,
    /// as protobuf does for `int32` and `int64`).
    pub fn int(&mut self, field: u32, v: i64) {
        self.key(field, VARINT);
        self.varint(v as u64);
    }

    /// A `float` field.
    pub fn float(&mut self, field: u32, v: f32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, LEN);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A `string` field.
    pub fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// A packed `repeated int64` field.
    pub fn packed_ints(&mut self, field: u32, vs: &[i64]) {
        let mut inner = Encoder::new();
        for &v in vs {
            inner.varint(v as u64);
        }
        self.bytes(field, &inner.buf);
    }

    /// A nested message, written by `f` into its own buffer.
    pub fn message(&mut self, field: u32, f: impl FnOnce(&mut Encoder)) {
        let mut inner = Encoder::new();
        f(&mut inner);
        self.bytes(field, &inner.buf);
    }
}

/// `TensorProto.DataType` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit float.
    Float = 1,
    /// 64-bit signed integer.
    Int64 = 7,
}

/// A constant tensor (an initializer, or a `value` attribute).
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Its name in the graph.
    pub name: String,
    /// Its shape.
    pub dims: Vec<i64>,
    /// Its element type.
    pub data_type: DataType,
    /// Its elements, little-endian, row-major (`raw_data`).
    pub raw: Vec<u8>,
}

impl Tensor {
    /// A float tensor of shape `dims` holding `data` (row-major).
    pub fn f32(name: impl Into<String>, dims: Vec<i64>, data: &[f32]) -> Self {
        Self {
            name: name.into(),
            dims,
            data_type: DataType::Float,
            raw: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// A float tensor of shape `dims` whose elements are the rows given, in order (an
    /// embedding table written without an intermediate copy).
    pub fn f32_rows<'r>(
        name: impl Into<String>,
        dims: Vec<i64>,
        rows: impl Iterator<Item = &'r [f32]>,
    ) -> Self {
        let elements = dims.iter().product::<i64>().max(0) as usize;
        let mut raw = Vec::with_capacity(elements * 4);
        for row in rows {
            raw.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        }
        Self {
            name: name.into(),
            dims,
            data_type: DataType::Float,
            raw,
        }
    }

    /// An int64 tensor of shape `dims` holding `data` (row-major).
    pub fn i64(name: impl Into<String>, dims: Vec<i64>, data: &[i64]) -> Self {
        Self {
            name: name.into(),
            dims,
            data_type: DataType::Int64,
            raw: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// `TensorProto`: dims (1), data_type (2), name (8), raw_data (9).
    fn encode(&self, e: &mut Encoder) {
        e.packed_ints(1, &self.dims);
        e.int(2, self.data_type as i64);
        e.string(8, &self.name);
        e.bytes(9, &self.raw);
    }
}

/// An attribute of a node.
#[derive(Debug, Clone)]
pub enum Attribute {
    /// `INT` (type 2).
    Int(&'static str, i64),
    /// `FLOAT` (type 1).
    Float(&'static str, f32),
    /// `INTS` (type 7).
    Ints(&'static str, Vec<i64>),
}

impl Attribute {
    /// `AttributeProto`: name (1), f (2), i (3), ints (8), type (20).
    fn encode(&self, e: &mut Encoder) {
        match *self {
            Attribute::Float(name, v) => {
                e.string(1, name);
                e.float(2, v);
                e.int(20, 1);
            }
            Attribute::Int(name, v) => {
                e.string(1, name);
                e.int(3, v);
                e.int(20, 2);
            }
            Attribute::Ints(name, ref vs) => {
                e.string(1, name);
                e.packed_ints(8, vs);
                e.int(20, 7);
            }
        }
    }
}

/// One operator application.
#[derive(Debug, Clone)]
pub struct Node {
    /// The operator (`"Gemm"`, `"Relu"`, ...), in the default ONNX domain.
    pub op: &'static str,
    /// Input value names (an empty name is an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// A unique node name.
    pub name: String,
    /// Attributes.
    pub attributes: Vec<Attribute>,
}

impl Node {
    /// `NodeProto`: input (1), output (2), name (3), op_type (4), attribute (5).
    fn encode(&self, e: &mut Encoder) {
        for i in &self.inputs {
            e.string(1, i);
        }
        for o in &self.outputs {
            e.string(2, o);
        }
        e.string(3, &self.name);
        e.string(4, self.op);
        for a in &self.attributes {
            e.message(5, |e| a.encode(e));
        }
    }
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A size given at run time, named (the same name means the same size).
    Named(String),
}

/// A graph input or output: name, element type and shape.
#[derive(Debug, Clone)]
pub struct ValueInfo {
    /// Its name.
    pub name: String,
    /// Element type.
    pub data_type: DataType,
    /// Shape.
    pub dims: Vec<Dim>,
    /// What it holds, for a reader of the model.
    pub doc: String,
}

impl ValueInfo {
    /// `ValueInfoProto`: name (1), type (2) = `TypeProto { tensor_type (1) =
    /// { elem_type (1), shape (2) = TensorShapeProto { dim (1) = { dim_value (1) | dim_param (2) } } } }`,
    /// doc_string (3).
    fn encode(&self, e: &mut Encoder) {
        e.string(1, &self.name);
        e.message(2, |e| {
            e.message(1, |e| {
                e.int(1, self.data_type as i64);
                e.message(2, |e| {
                    for d in &self.dims {
                        e.message(1, |e| match d {
                            Dim::Fixed(v) => e.int(1, *v),
                            Dim::Named(s) => e.string(2, s),
                        });
                    }
                });
            });
        });
        e.string(3, &self.doc);
    }
}

/// A graph: nodes in topological order, constant tensors, inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The nodes, each after the nodes it reads.
    pub nodes: Vec<Node>,
    /// Its name.
    pub name: String,
    /// The constants (weights, tables, index tensors).
    pub initializers: Vec<Tensor>,
    /// What it does.
    pub doc: String,
    /// Run-time inputs.
    pub inputs: Vec<ValueInfo>,
    /// Outputs.
    pub outputs: Vec<ValueInfo>,
}

impl Graph {
    /// `GraphProto`: node (1), name (2), initializer (5), doc_string (10), input (11),
    /// output (12).
    fn encode(&self, e: &mut Encoder) {
        for n in &self.nodes {
            e.message(1, |e| n.encode(e));
        }
        e.string(2, &self.name);
        for t in &self.initializers {
            e.message(5, |e| t.encode(e));
        }
        e.string(10, &self.doc);
        for v in &self.inputs {
            e.message(11, |e| v.encode(e));
        }
        for v in &self.outputs {
            e.message(12, |e| v.encode(e));
        }
    }

    /// Bytes of the graph's constants (the bulk of the file).
    pub fn initializer_bytes(&self) -> usize {
        self.initializers.iter().map(|t| t.raw.len()).sum()
    }
}

/// A whole model file.
#[derive(Debug, Clone)]
pub struct Model {
    /// The ONNX IR version.
    pub ir_version: i64,
    /// The version of the default operator set.
    pub opset: i64,
    /// Who wrote it.
    pub producer_name: String,
    /// Its version.
    pub producer_version: String,
    /// What the model is.
    pub doc: String,
    /// The graph.
    pub graph: Graph,
    /// Key-value metadata (`metadata_props`).
    pub metadata: Vec<(String, String)>,
}

impl Model {
    /// `ModelProto`: ir_version (1), producer_name (2), producer_version (3), doc_string (6),
    /// graph (7), opset_import (8) = `OperatorSetIdProto { domain (1), version (2) }`,
    /// metadata_props (14) = `StringStringEntryProto { key (1), value (2) }`.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.int(1, self.ir_version);
        e.string(2, &self.producer_name);
        e.string(3, &self.producer_version);
        e.string(6, &self.doc);
        e.message(7, |e| self.graph.encode(e));
        e.message(8, |e| {
            e.string(1, "");
            e.int(2, self.opset);
        });
        for (k, v) in &self.metadata {
            e.message(14, |e| {
                e.string(1, k);
                e.string(2, v);
            });
        }
        e.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_in_the_protobuf_documentation() {
        // The protobuf encoding guide's examples: 1 is 01, 150 is 96 01, 300 is ac 02.
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
            (u64::MAX, vec![0xff; 9].into_iter().chain([0x01]).collect()),
        ] {
            let mut e = Encoder::new();
            e.varint(v);
            assert_eq!(e.into_bytes(), bytes, "varint {v}");
        }
    }

    #[test]
    fn fields_keys_and_lengths() {
        // Field 1 = 150 (the guide's `08 96 01`), field 2 = "testing" (`12 07 74 65 73 74 69 6e 67`).
        let mut e = Encoder::new();
        e.int(1, 150);
        e.string(2, "testing");
        assert_eq!(
            e.into_bytes(),
            [
                0x08, 0x96, 0x01, 0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g'
            ]
        );
        // A negative int64 takes ten bytes; a float is a fixed32 little-endian.
        let mut e = Encoder::new();
        e.int(3, -1);
        e.float(2, 1.0);
        let b = e.into_bytes();
        assert_eq!(b[0], 0x18);
        assert_eq!(
            &b[1..11],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(&b[11..], &[0x15, 0x00, 0x00, 0x80, 0x3f]);
    }

    #[test]
    fn packed_and_nested() {
        // The guide's packed example: field 4 = [3, 270, 86942] is `22 06 03 8e 02 9e a7 05`.
        let mut e = Encoder::new();
        e.packed_ints(4, &[3, 270, 86942]);
        assert_eq!(
            e.into_bytes(),
            [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]
        );
        // A nested message `{ 1: 150 }` as field 3 is `1a 03 08 96 01`.
        let mut e = Encoder::new();
        e.message(3, |e| e.int(1, 150));
        assert_eq!(e.into_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
    }

    #[test]
    fn tensors_are_little_endian_raw_data() {
        let t = Tensor::f32("w", vec![2], &[1.0, -2.0]);
        assert_eq!(t.raw, [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
        let t = Tensor::i64("i", vec![1], &[-1]);
        assert_eq!(t.raw, [0xff; 8]);
        let mut e = Encoder::new();
        Tensor::i64("k", vec![1], &[5]).encode(&mut e);
        // dims [1], data_type 7, name "k", raw 8 bytes.
        let b = e.into_bytes();
        assert_eq!(&b[..7], &[0x0a, 0x01, 0x01, 0x10, 0x07, 0x42, 0x01]);
        assert_eq!(&b[7..9], b"k\x4a");
        assert_eq!(b[9], 8);
    }
}
