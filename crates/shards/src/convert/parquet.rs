//! Parquet input to the converter, read through the `parquet` crate's column readers (no
//! Arrow arrays).
//!
//! A Parquet file is a footer (the schema and, per row group, where each column chunk
//! sits) and row groups, each holding one column chunk per leaf column, split into
//! compressed pages. A value's place in a nested column is given by two small integers per
//! entry: the definition level (how many optional or repeated ancestors are present: the
//! maximum means a value, less a null or an empty list) and the repetition level (0 starts
//! a new row, 1 continues the current row's list).
//!
//! The converter reads the row groups one after the other, and inside a row group
//! [`BATCH`] rows at a time from the column readers of the columns the spec uses, so memory
//! holds one batch of rows plus the page each column reader is on, never the file. Every
//! value is rendered as the text a CSV file would hold (integers in decimal, floats in
//! Rust's shortest round-trip form, booleans as 1 and 0, strings as their bytes), so the
//! engine of `mod.rs` treats both formats alike:
//! - a top-level column of one leaf is a cell; the header is the schema's top-level names;
//! - a list column (a `LIST`-annotated group or a bare repeated field) is a bag: its
//!   elements are the bag's values, a null or empty list an empty bag; only `multi`
//!   columns may be lists;
//! - a null reads as an empty CSV cell: an error naming the row and column for a label, a
//!   dense feature, a weight or a raw integer id; a value of its own for `hash_buckets` and
//!   `"vocabulary": true` (the unknown id 0 unless it is frequent enough); a null element
//!   of a list is an empty value;
//! - dictionary-encoded pages (what Spark and Hive write for strings) are decoded by the
//!   column readers like any other page;
//! - structs, maps, lists of lists, decimals, INT96 timestamps and half floats are refused
//!   with the reason, when the spec uses them (other columns are never read).

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use parquet::basic::{ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::column::reader::ColumnReader;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::schema::types::{SchemaDescriptor, Type};

use super::Record;
use crate::error::{Result, ShardError, io};

/// Rows decoded at a time from each column of a row group.
pub(crate) const BATCH: usize = 1024;

/// An opened Parquet file: its footer parsed, its columns classified.
pub(crate) struct ParquetInput {
    path: PathBuf,
    reader: SerializedFileReader<File>,
    header: Vec<String>,
    /// Per header position: the leaf column to read, or why it cannot be read.
    columns: Vec<std::result::Result<Leaf, String>>,
    bytes: u64,
}

/// A top-level column of one leaf.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    /// The leaf's index among the file's leaf columns.
    index: usize,
    /// The definition level of a present value.
    max_def: i16,
    /// For a list: the definition level at which the list has an entry (below it the list
    /// is null or empty).
    list_def: Option<i16>,
    kind: Kind,
}

/// How a leaf's values are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float,
    Double,
    Bytes,
}

/// Runs a call into the `parquet` crate, turning a panic of it (it has a few `unwrap`s on
/// malformed pages; `tests/parquet.rs` found one by flipping bytes) into an error.
fn guard<T>(f: impl FnOnce() -> parquet::errors::Result<T>) -> parquet::errors::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(parquet::errors::ParquetError::General(
            "malformed data (the Parquet reader gave up)".into(),
        ))
    })
}

fn perr(path: &Path, at: impl Into<String>, detail: impl ToString) -> ShardError {
    ShardError::Parquet {
        file: path.display().to_string(),
        at: at.into(),
        detail: detail.to_string(),
    }
}

impl ParquetInput {
    /// Opens `path` and parses its footer.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io(path))?;
        let bytes = file.metadata().map_err(io(path))?.len();
        let reader =
            guard(|| SerializedFileReader::new(file)).map_err(|e| perr(path, "footer", e))?;
        let descr = reader.metadata().file_metadata().schema_descr();
        let fields = descr.root_schema().get_fields();
        let header: Vec<String> = fields.iter().map(|f| f.name().to_string()).collect();
        let mut leaves: Vec<Vec<usize>> = vec![Vec::new(); fields.len()];
        for leaf in 0..descr.num_columns() {
            if let Some(l) = leaves.get_mut(descr.get_column_root_idx(leaf)) {
                l.push(leaf);
            }
        }
        let columns = leaves
            .iter()
            .zip(fields)
            .map(|(l, field)| match l.as_slice() {
                [leaf] => classify(descr, *leaf, field),
                [] => Err("an empty group".into()),
                more => Err(format!(
                    "a struct or map of {} columns (only plain columns and lists are read)",
                    more.len()
                )),
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            header,
            columns,
            bytes,
        })
    }

    /// The top-level column names.
    pub(crate) fn header(&self) -> &[String] {
        &self.header
    }

    /// Calls `f` on every row, reading the positions `used`; the positions in `bags` may be
    /// lists. Returns the file's size in bytes.
    pub(crate) fn for_each(
        &self,
        used: &[usize],
        bags: &[usize],
        f: &mut dyn FnMut(&dyn Record) -> Result<()>,
    ) -> Result<u64> {
        let mut leaves = Vec::with_capacity(used.len());
        for &p in used {
            let name = &self.header[p];
            let leaf = self.columns[p]
                .as_ref()
                .map_err(|why| perr(&self.path, format!("column {name:?}"), why))?;
            if leaf.list_def.is_some() && !bags.contains(&p) {
                return Err(perr(
                    &self.path,
                    format!("column {name:?}"),
                    "a list column can only be a multi-valued feature (\"multi\")",
                ));
            }
            leaves.push((p, *leaf));
        }
        let mut row = ParquetRow {
            input: self,
            number: 0,
            buf: Vec::new(),
            cells: vec![Cell::default(); self.header.len()],
            elems: Vec::new(),
        };
        for g in 0..self.reader.num_row_groups() {
            let at = || format!("row group {g}");
            let group =
                guard(|| self.reader.get_row_group(g)).map_err(|e| perr(&self.path, at(), e))?;
            let rows = usize::try_from(group.metadata().num_rows())
                .map_err(|_| perr(&self.path, at(), "a negative row count"))?;
            let mut readers = leaves
                .iter()
                .map(|&(p, leaf)| {
                    guard(|| Column::open(&*group, p, leaf)).map_err(|e| perr(&self.path, at(), e))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut left = rows;
            while left > 0 {
                let take = left.min(BATCH);
                for c in &mut readers {
                    let got = guard(|| c.read(take)).map_err(|e| {
                        perr(
                            &self.path,
                            format!("{}, column {:?}", at(), self.header[c.position]),
                            e,
                        )
                    })?;
                    if got != take {
                        return Err(perr(
                            &self.path,
                            format!("{}, column {:?}", at(), self.header[c.position]),
                            format!(
                                "the column ends {} rows before the row group's {rows}",
                                left - got
                            ),
                        ));
                    }
                }
                for _ in 0..take {
                    row.number += 1;
                    row.buf.clear();
                    row.elems.clear();
                    for c in &mut readers {
                        c.next_cell(&mut row).map_err(|e| {
                            perr(
                                &self.path,
                                format!("row {}, column {:?}", row.number, self.header[c.position]),
                                e,
                            )
                        })?;
                    }
                    f(&row)?;
                }
                left -= take;
            }
        }
        Ok(self.bytes)
    }
}

/// Classifies the top-level column `field`, whose only leaf is `leaf`.
fn classify(
    descr: &SchemaDescriptor,
    leaf: usize,
    field: &Type,
) -> std::result::Result<Leaf, String> {
    let col = descr.column(leaf);
    if col.max_rep_level() > 1 {
        return Err("a list of lists (only flat lists are read)".into());
    }
    // The definition level at which the repeated node (if any) is present.
    let mut list_def = None;
    let mut level = 0i16;
    let mut node = field;
    let parts = col.path().parts();
    for depth in 0.. {
        let info = node.get_basic_info();
        if info.has_repetition() {
            match info.repetition() {
                Repetition::OPTIONAL => level += 1,
                Repetition::REPEATED => {
                    level += 1;
                    list_def = Some(level);
                }
                Repetition::REQUIRED => {}
            }
        }
        if node.is_primitive() {
            break;
        }
        let next = parts.get(depth + 1).ok_or("a malformed column path")?;
        node = node
            .get_fields()
            .iter()
            .find(|f| f.name() == next)
            .ok_or("a malformed column path")?;
    }
    if level != col.max_def_level() {
        return Err("inconsistent definition levels".into());
    }
    let unsigned = matches!(
        col.converted_type(),
        ConvertedType::UINT_8
            | ConvertedType::UINT_16
            | ConvertedType::UINT_32
            | ConvertedType::UINT_64
    ) || matches!(col.logical_type_ref(), Some(LogicalType::Integer(t)) if !t.is_signed);
    if col.converted_type() == ConvertedType::DECIMAL
        || matches!(col.logical_type_ref(), Some(LogicalType::Decimal(_)))
    {
        return Err("a decimal column (cast it to double)".into());
    }
    if matches!(col.logical_type_ref(), Some(LogicalType::Float16)) {
        return Err("a half-precision float column (cast it to float)".into());
    }
    let kind = match col.physical_type() {
        Physical::BOOLEAN => Kind::Bool,
        Physical::INT32 if unsigned => Kind::UInt32,
        Physical::INT32 => Kind::Int32,
        Physical::INT64 if unsigned => Kind::UInt64,
        Physical::INT64 => Kind::Int64,
        Physical::FLOAT => Kind::Float,
        Physical::DOUBLE => Kind::Double,
        Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY => Kind::Bytes,
        Physical::INT96 => return Err("an INT96 timestamp column (cast it to int64)".into()),
    };
    Ok(Leaf {
        index: leaf,
        max_def: col.max_def_level(),
        list_def,
        kind,
    })
}

/// The decoded values of one batch of one column.
enum Values {
    Bool(Vec<bool>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float(Vec<f32>),
    Double(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

/// One column of a row group being read: its reader, the current batch's levels and
/// values, and cursors into them.
struct Column {
    position: usize,
    leaf: Leaf,
    reader: ColumnReader,
    def: Vec<i16>,
    rep: Vec<i16>,
    values: Values,
    level: usize,
    value: usize,
}

impl Column {
    fn open(
        group: &dyn RowGroupReader,
        position: usize,
        leaf: Leaf,
    ) -> parquet::errors::Result<Self> {
        let reader = group.get_column_reader(leaf.index)?;
        let values = match &reader {
            ColumnReader::BoolColumnReader(_) => Values::Bool(Vec::new()),
            ColumnReader::Int32ColumnReader(_) => Values::Int32(Vec::new()),
            ColumnReader::Int64ColumnReader(_) => Values::Int64(Vec::new()),
            ColumnReader::FloatColumnReader(_) => Values::Float(Vec::new()),
            ColumnReader::DoubleColumnReader(_) => Values::Double(Vec::new()),
            ColumnReader::ByteArrayColumnReader(_) => Values::Bytes(Vec::new()),
            ColumnReader::FixedLenByteArrayColumnReader(_) => Values::Fixed(Vec::new()),
            ColumnReader::Int96ColumnReader(_) => {
                return Err(parquet::errors::ParquetError::General(
                    "an INT96 column".into(),
                ));
            }
        };
        Ok(Self {
            position,
            leaf,
            reader,
            def: Vec::new(),
            rep: Vec::new(),
            values,
            level: 0,
            value: 0,
        })
    }

    /// Decodes the next `rows` rows (fewer at the end of the column); returns how many.
    fn read(&mut self, rows: usize) -> parquet::errors::Result<usize> {
        self.def.clear();
        self.rep.clear();
        self.level = 0;
        self.value = 0;
        let (def, rep) = (Some(&mut self.def), Some(&mut self.rep));
        let (records, _, _) = match (&mut self.reader, &mut self.values) {
            (ColumnReader::BoolColumnReader(r), Values::Bool(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::Int32ColumnReader(r), Values::Int32(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::Int64ColumnReader(r), Values::Int64(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::FloatColumnReader(r), Values::Float(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::DoubleColumnReader(r), Values::Double(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::ByteArrayColumnReader(r), Values::Bytes(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            (ColumnReader::FixedLenByteArrayColumnReader(r), Values::Fixed(v)) => {
                v.clear();
                r.read_records(rows, def, rep, v)?
            }
            _ => unreachable!("the values buffer is made for its reader"),
        };
        Ok(records)
    }

    /// The definition level of the next entry (the maximum when the column has no
    /// definition levels).
    fn next_def(&mut self) -> std::result::Result<i16, String> {
        if self.leaf.max_def == 0 {
            return Ok(0);
        }
        let d = *self
            .def
            .get(self.level)
            .ok_or("fewer definition levels than rows")?;
        if d > self.leaf.max_def {
            return Err(format!(
                "definition level {d} above the column's maximum {}",
                self.leaf.max_def
            ));
        }
        Ok(d)
    }

    /// Renders the next value into `buf`.
    fn render(&mut self, buf: &mut Vec<u8>) -> std::result::Result<(), String> {
        let i = self.value;
        self.value += 1;
        let missing = || "fewer values than the definition levels say".to_string();
        let kind = self.leaf.kind;
        // Writing into a Vec cannot fail.
        let _ = match &self.values {
            Values::Bool(v) => buf.write_all(if *v.get(i).ok_or_else(missing)? {
                b"1"
            } else {
                b"0"
            }),
            Values::Int32(v) if kind == Kind::UInt32 => {
                write!(buf, "{}", *v.get(i).ok_or_else(missing)? as u32)
            }
            Values::Int32(v) => write!(buf, "{}", v.get(i).ok_or_else(missing)?),
            Values::Int64(v) if kind == Kind::UInt64 => {
                write!(buf, "{}", *v.get(i).ok_or_else(missing)? as u64)
            }
            Values::Int64(v) => write!(buf, "{}", v.get(i).ok_or_else(missing)?),
            Values::Float(v) => write!(buf, "{}", v.get(i).ok_or_else(missing)?),
            Values::Double(v) => write!(buf, "{}", v.get(i).ok_or_else(missing)?),
            Values::Bytes(v) => buf.write_all(v.get(i).ok_or_else(missing)?.data()),
            Values::Fixed(v) => buf.write_all(v.get(i).ok_or_else(missing)?.data()),
        };
        Ok(())
    }

    /// Decodes this column's cell of the next row into `row`.
    fn next_cell(&mut self, row: &mut ParquetRow<'_>) -> std::result::Result<(), String> {
        let start = row.buf.len();
        let Some(list_def) = self.leaf.list_def else {
            let d = self.next_def()?;
            self.level += 1;
            let null = d < self.leaf.max_def;
            if !null {
                self.render(&mut row.buf)?;
            }
            row.cells[self.position] = Cell {
                start,
                end: row.buf.len(),
                null,
                list: None,
            };
            return Ok(());
        };
        let first = row.elems.len();
        let mut entry = 0usize;
        loop {
            if entry > 0 && self.rep.get(self.level).is_none_or(|&r| r == 0) {
                break;
            }
            if entry == 0 && self.rep.get(self.level).is_some_and(|&r| r != 0) {
                return Err("a row starts inside a list".into());
            }
            let d = self.next_def()?;
            self.level += 1;
            entry += 1;
            if d < list_def {
                // A null or empty list: one entry, no element.
                continue;
            }
            if d == self.leaf.max_def {
                let a = row.buf.len();
                self.render(&mut row.buf)?;
                row.elems.push(Some((a, row.buf.len())));
            } else {
                row.elems.push(None);
            }
        }
        row.cells[self.position] = Cell {
            start,
            end: start,
            null: false,
            list: Some((first, row.elems.len())),
        };
        Ok(())
    }
}

/// Where one cell of the current row sits in [`ParquetRow::buf`].
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    start: usize,
    end: usize,
    null: bool,
    /// A list: its elements' range in [`ParquetRow::elems`].
    list: Option<(usize, usize)>,
}

/// The current row: the rendered cells of the columns read.
struct ParquetRow<'a> {
    input: &'a ParquetInput,
    /// 1-based row number in the file.
    number: u64,
    buf: Vec<u8>,
    cells: Vec<Cell>,
    /// List elements: their span in `buf`, or `None` for a null element.
    elems: Vec<Option<(usize, usize)>>,
}

impl Record for ParquetRow<'_> {
    fn cell(&self, i: usize) -> Cow<'_, [u8]> {
        let c = self.cells[i];
        Cow::Borrowed(&self.buf[c.start..c.end])
    }

    fn for_each_value(
        &self,
        i: usize,
        separator: u8,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let c = self.cells[i];
        match c.list {
            Some((a, b)) => self.elems[a..b]
                .iter()
                .try_for_each(|e| f(e.map_or(&b""[..], |(s, t)| &self.buf[s..t]))),
            None => {
                let cell = &self.buf[c.start..c.end];
                if cell.trim_ascii().is_empty() {
                    return Ok(());
                }
                cell.split(|&b| b == separator).try_for_each(f)
            }
        }
    }

    fn err(&self, i: usize, detail: String) -> ShardError {
        let detail = if self.cells[i].null {
            format!("null where a value is needed ({detail})")
        } else {
            detail
        };
        perr(
            &self.input.path,
            format!("row {}, column {:?}", self.number, self.input.header[i]),
            detail,
        )
    }

    fn row_err(&self, columns: &str, detail: String) -> ShardError {
        perr(
            &self.input.path,
            format!("row {}, columns {columns:?}", self.number),
            detail,
        )
    }
}
