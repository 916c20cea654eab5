//! Parquet input: files written here with the `parquet` crate's own writer (nulls, lists
//! with null and empty entries, dictionary pages, several row groups and pages, every
//! codec) convert to the same shard files, byte for byte, as the equivalent CSV; bad
//! columns and nulls where a value is needed are errors naming the row and column.
#![cfg(feature = "parquet")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, DoubleType, FloatType, Int32Type, Int64Type,
};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use shards::ShardError;
use shards::convert::{
    BagSpec, ColumnSpec, ConvertOptions, CsvSpec, InputFormat, convert, convert_csv, read_header,
};

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shards-parquet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One column of a test table.
#[derive(Clone)]
enum Col {
    Bool(Vec<bool>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Str(Vec<Option<String>>),
    /// A LIST of optional strings; `None` is a null list.
    StrList(Vec<Option<Vec<Option<String>>>>),
    /// A LIST of required int32.
    I32List(Vec<Option<Vec<i32>>>),
}

impl Col {
    fn len(&self) -> usize {
        match self {
            Col::Bool(v) => v.len(),
            Col::I32(v) => v.len(),
            Col::I64(v) => v.len(),
            Col::F32(v) => v.len(),
            Col::F64(v) => v.len(),
            Col::Str(v) => v.len(),
            Col::StrList(v) => v.len(),
            Col::I32List(v) => v.len(),
        }
    }

    fn schema(&self, name: &str) -> String {
        match self {
            Col::Bool(_) => format!("required boolean {name};"),
            Col::I32(_) => format!("optional int32 {name};"),
            Col::I64(_) => format!("optional int64 {name};"),
            Col::F32(_) => format!("optional float {name};"),
            Col::F64(_) => format!("optional double {name};"),
            Col::Str(_) => format!("optional binary {name} (UTF8);"),
            Col::StrList(_) => format!(
                "optional group {name} (LIST) {{ repeated group list {{ optional binary element (UTF8); }} }}"
            ),
            Col::I32List(_) => format!(
                "optional group {name} (LIST) {{ repeated group list {{ required int32 element; }} }}"
            ),
        }
    }

    /// The CSV cell of row `r`: a null is an empty cell, a list its elements joined by `;`.
    fn csv(&self, r: usize) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        match self {
            Col::Bool(v) => (v[r] as u8).to_string(),
            Col::I32(v) => opt(v[r].map(|x| x.to_string())),
            Col::I64(v) => opt(v[r].map(|x| x.to_string())),
            Col::F32(v) => opt(v[r].map(|x| x.to_string())),
            Col::F64(v) => opt(v[r].map(|x| x.to_string())),
            Col::Str(v) => opt(v[r].clone()),
            Col::StrList(v) => opt(v[r].as_ref().map(|l| {
                l.iter()
                    .map(|e| e.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(";")
            })),
            Col::I32List(v) => opt(v[r].as_ref().map(|l| {
                l.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(";")
            })),
        }
    }
}

/// Definition levels (and values) of an optional scalar column's rows `a..b`.
fn optional<T: Clone>(v: &[Option<T>]) -> (Vec<T>, Vec<i16>) {
    let def = v.iter().map(|x| x.is_some() as i16).collect();
    (v.iter().flatten().cloned().collect(), def)
}

/// Values, definition and repetition levels of a 3-level LIST column: def 0 a null list,
/// 1 an empty list, 2 a null element, 3 (or 2 for required elements) a value.
fn list<T: Clone>(v: &[Option<Vec<Option<T>>>], required: bool) -> (Vec<T>, Vec<i16>, Vec<i16>) {
    let (mut vals, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    let top = if required { 2 } else { 3 };
    for row in v {
        match row {
            None => (def.push(0), rep.push(0)).1,
            Some(l) if l.is_empty() => (def.push(1), rep.push(0)).1,
            Some(l) => {
                for (k, e) in l.iter().enumerate() {
                    rep.push((k > 0) as i16);
                    match e {
                        Some(x) => {
                            vals.push(x.clone());
                            def.push(top);
                        }
                        None => def.push(2),
                    }
                }
            }
        }
    }
    (vals, def, rep)
}

fn bytes(v: Vec<String>) -> Vec<ByteArray> {
    v.into_iter()
        .map(|s| ByteArray::from(s.into_bytes()))
        .collect()
}

/// Writes `cols` as a Parquet file, `group` rows per row group, pages of at most `page`
/// rows, dictionary encoding on.
fn write_parquet(path: &Path, cols: &[(&str, Col)], group: usize, page: usize, codec: Compression) {
    let message = format!(
        "message t {{ {} }}",
        cols.iter()
            .map(|(n, c)| c.schema(n))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let schema = Arc::new(parse_message_type(&message).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(codec)
            .set_dictionary_enabled(true)
            .set_data_page_row_count_limit(page)
            .set_write_batch_size(page)
            .build(),
    );
    let rows = cols[0].1.len();
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    for start in (0..rows).step_by(group) {
        let end = (start + group).min(rows);
        let mut rg = w.next_row_group().unwrap();
        for (_, c) in cols {
            let mut cw = rg.next_column().unwrap().unwrap();
            match c {
                Col::Bool(v) => {
                    cw.typed::<BoolType>()
                        .write_batch(&v[start..end], None, None)
                        .unwrap();
                }
                Col::I32(v) => {
                    let (x, d) = optional(&v[start..end]);
                    cw.typed::<Int32Type>()
                        .write_batch(&x, Some(&d), None)
                        .unwrap();
                }
                Col::I64(v) => {
                    let (x, d) = optional(&v[start..end]);
                    cw.typed::<Int64Type>()
                        .write_batch(&x, Some(&d), None)
                        .unwrap();
                }
                Col::F32(v) => {
                    let (x, d) = optional(&v[start..end]);
                    cw.typed::<FloatType>()
                        .write_batch(&x, Some(&d), None)
                        .unwrap();
                }
                Col::F64(v) => {
                    let (x, d) = optional(&v[start..end]);
                    cw.typed::<DoubleType>()
                        .write_batch(&x, Some(&d), None)
                        .unwrap();
                }
                Col::Str(v) => {
                    let (x, d) = optional(&v[start..end]);
                    cw.typed::<ByteArrayType>()
                        .write_batch(&bytes(x), Some(&d), None)
                        .unwrap();
                }
                Col::StrList(v) => {
                    let (x, d, r) = list(&v[start..end], false);
                    cw.typed::<ByteArrayType>()
                        .write_batch(&bytes(x), Some(&d), Some(&r))
                        .unwrap();
                }
                Col::I32List(v) => {
                    let v: Vec<Option<Vec<Option<i32>>>> = v[start..end]
                        .iter()
                        .map(|l| l.as_ref().map(|l| l.iter().map(|&x| Some(x)).collect()))
                        .collect();
                    let (x, d, r) = list(&v, true);
                    cw.typed::<Int32Type>()
                        .write_batch(&x, Some(&d), Some(&r))
                        .unwrap();
                }
            }
            cw.close().unwrap();
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}

/// The same table as CSV.
fn write_csv(path: &Path, cols: &[(&str, Col)]) {
    let mut text = cols.iter().map(|c| c.0).collect::<Vec<_>>().join(",");
    text.push('\n');
    for r in 0..cols[0].1.len() {
        text.push_str(
            &cols
                .iter()
                .map(|c| c.1.csv(r))
                .collect::<Vec<_>>()
                .join(","),
        );
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// A small xorshift generator, so the table is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A table with every column kind the converter reads, nulls where the spec allows them.
fn table(rows: usize) -> Vec<(&'static str, Col)> {
    let mut g = Rng(0x2545_F491_4F6C_DD1D);
    let words = ["red", "green", "blue", "teal", "plum", "sand", "rose"];
    let mut cols: Vec<(&str, Col)> = vec![];
    let click: Vec<bool> = (0..rows).map(|_| g.next(4) == 0).collect();
    let buy: Vec<Option<i32>> = click
        .iter()
        .map(|&c| Some((c && g.next(3) == 0) as i32))
        .collect();
    cols.push(("click", Col::Bool(click)));
    cols.push(("buy", Col::I32(buy)));
    cols.push((
        "user",
        Col::I64((0..rows).map(|_| Some(g.next(500) as i64)).collect()),
    ));
    cols.push((
        "city",
        Col::Str(
            (0..rows)
                .map(|_| (g.next(10) != 0).then(|| words[g.next(7) as usize].to_string()))
                .collect(),
        ),
    ));
    cols.push((
        "item",
        Col::Str(
            (0..rows)
                .map(|_| Some(format!("item-{}", g.next(300))))
                .collect(),
        ),
    ));
    cols.push((
        "price",
        Col::F64(
            (0..rows)
                .map(|_| Some(g.next(10_000) as f64 / 7.0))
                .collect(),
        ),
    ));
    cols.push((
        "score",
        Col::F32(
            (0..rows)
                .map(|_| Some(g.next(1000) as f32 * 0.01 - 3.0))
                .collect(),
        ),
    ));
    cols.push((
        "tags",
        Col::StrList(
            (0..rows)
                .map(|_| match g.next(8) {
                    0 => None,
                    1 => Some(vec![]),
                    n => Some(
                        (0..n)
                            .map(|_| {
                                (g.next(12) != 0).then(|| words[g.next(7) as usize].to_string())
                            })
                            .collect(),
                    ),
                })
                .collect(),
        ),
    ));
    cols.push((
        "cats",
        Col::I32List(
            (0..rows)
                .map(|_| match g.next(6) {
                    0 => None,
                    n => Some((0..n).map(|_| g.next(40) as i32).collect()),
                })
                .collect(),
        ),
    ));
    cols.push((
        "query",
        Col::Str((0..rows).map(|r| Some(format!("q{}", r / 5))).collect()),
    ));
    cols
}

fn spec() -> CsvSpec {
    let bag = |column: &str| BagSpec {
        column: column.into(),
        separator: ';',
        vocab: None,
        hash_buckets: None,
        vocabulary: false,
        min_count: None,
        pooling: shards::Pooling::Sum,
    };
    CsvSpec {
        labels: vec!["click".into(), "buy".into()],
        tasks: vec![],
        targets: vec![],
        single: vec![
            ColumnSpec::ids("user"),
            ColumnSpec {
                vocabulary: true,
                ..ColumnSpec::ids("city")
            },
            ColumnSpec {
                hash_buckets: Some(64),
                ..ColumnSpec::ids("item")
            },
            ColumnSpec {
                quantiles: Some(9),
                ..ColumnSpec::ids("price")
            },
        ],
        multi: vec![
            BagSpec {
                vocabulary: true,
                min_count: Some(2),
                ..bag("tags")
            },
            bag("cats"),
        ],
        dense: vec!["score".into()],
        group: Some("query".into()),
        weight: None,
        item: Some("item".into()),
        soft_labels: false,
        funnel: true,
        standardize: true,
    }
}

/// Every file of a dataset directory, by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn parquet_converts_to_the_same_shards_as_the_equivalent_csv() {
    let dir = temp_dir("same");
    let cols = table(5_000);
    let csv = dir.join("t.csv");
    write_csv(&csv, &cols);
    let options = || ConvertOptions {
        rows_per_shard: 1_500,
        ..ConvertOptions::default()
    };
    let from_csv = dir.join("from-csv");
    let r = convert_csv(&csv, &spec(), &from_csv, options()).unwrap();
    assert_eq!(r.info.rows, 5_000);
    let expected = files(&from_csv);
    assert!(
        expected.len() >= 6,
        "schema, manifest and 4 shards: {:?}",
        expected.len()
    );
    let codecs = [
        Compression::SNAPPY,
        Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        Compression::LZ4_RAW,
        Compression::UNCOMPRESSED,
    ];
    // Row groups smaller than a batch, and larger (a batch boundary inside a group).
    for (k, (codec, group)) in codecs
        .into_iter()
        .zip([700, 3_000, 1_024, 5_000])
        .enumerate()
    {
        let pq = dir.join(format!("t{k}.parquet"));
        write_parquet(&pq, &cols, group, 300, codec);
        let meta = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
        assert_eq!(meta.num_row_groups(), 5_000usize.div_ceil(group));
        let city = meta.metadata().row_group(0).column(3);
        assert!(
            city.dictionary_page_offset().is_some(),
            "the strings are dictionary-encoded"
        );
        assert_eq!(InputFormat::of(&pq).unwrap(), InputFormat::Parquet);
        assert_eq!(read_header(&pq).unwrap(), read_header(&csv).unwrap());
        let out = dir.join(format!("from-parquet-{k}"));
        let r = convert(&pq, &spec(), &out, options()).unwrap();
        assert_eq!(r.info.rows, 5_000);
        assert_eq!(r.bytes, std::fs::metadata(&pq).unwrap().len());
        let got = files(&out);
        assert_eq!(got.len(), expected.len());
        for (a, b) in got.iter().zip(&expected) {
            assert_eq!(a.0, b.0);
            assert!(
                a.1 == b.1,
                "{codec:?}, {group} rows per group: {} differs",
                a.0
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn err(cols: &[(&str, Col)], spec: &CsvSpec, name: &str) -> String {
    let dir = temp_dir(name);
    let pq = dir.join("t.parquet");
    write_parquet(&pq, cols, 4, 2, Compression::SNAPPY);
    let out = dir.join("out");
    let e = convert(&pq, spec, &out, ConvertOptions::default()).unwrap_err();
    assert!(!out.exists(), "a failed conversion leaves nothing");
    assert!(matches!(e, ShardError::Parquet { .. }), "{e:?}");
    std::fs::remove_dir_all(dir).unwrap();
    e.to_string()
}

fn small_spec(single: Vec<ColumnSpec>, dense: Vec<String>) -> CsvSpec {
    CsvSpec {
        labels: vec!["click".into()],
        tasks: vec![],
        targets: vec![],
        single,
        multi: vec![],
        dense,
        group: None,
        weight: None,
        item: None,
        soft_labels: false,
        funnel: false,
        standardize: false,
    }
}

#[test]
fn nulls_where_a_value_is_needed_name_the_row_and_column() {
    let click = Col::I32(vec![
        Some(1),
        Some(0),
        Some(0),
        Some(1),
        Some(0),
        None,
        Some(1),
    ]);
    let user = Col::I64(vec![
        Some(1),
        Some(2),
        Some(3),
        Some(4),
        Some(5),
        Some(6),
        None,
    ]);
    let x = Col::F64(vec![
        Some(0.5),
        Some(1.0),
        Some(2.0),
        None,
        Some(1.0),
        Some(1.0),
        Some(1.0),
    ]);
    let cols = [("click", click), ("user", user), ("x", x)];
    let e = err(&cols, &small_spec(vec![], vec!["x".into()]), "null-dense");
    assert!(
        e.contains("row 4, column \"x\": null where a value is needed"),
        "{e}"
    );
    let e = err(&cols, &small_spec(vec![], vec![]), "null-label");
    assert!(
        e.contains("row 6, column \"click\": null where a value is needed"),
        "{e}"
    );
    let mut cols = cols;
    cols[0].1 = Col::I32(vec![Some(1); 7]);
    let e = err(
        &cols,
        &small_spec(vec![ColumnSpec::ids("user")], vec![]),
        "null-id",
    );
    assert!(
        e.contains("row 7, column \"user\": null") && e.contains("not an integer id"),
        "{e}"
    );
    // A hashed or vocabulary column maps a null to an id, as an empty CSV cell.
    let dir = temp_dir("null-ok");
    let pq = dir.join("t.parquet");
    let cols = [
        ("click", Col::I32(vec![Some(1), Some(0), Some(1)])),
        (
            "user",
            Col::Str(vec![Some("a".into()), None, Some("b".into())]),
        ),
    ];
    write_parquet(&pq, &cols, 2, 1, Compression::SNAPPY);
    let spec = small_spec(
        vec![ColumnSpec {
            vocabulary: true,
            ..ColumnSpec::ids("user")
        }],
        vec![],
    );
    let r = convert(&pq, &spec, &dir.join("out"), ConvertOptions::default()).unwrap();
    assert_eq!(r.info.rows, 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn columns_that_cannot_feed_the_spec_are_errors_with_the_reason() {
    let dir = temp_dir("kinds");
    let pq = dir.join("t.parquet");
    let message = "message t { required int32 click; optional group s { optional int32 a; optional int32 b; } \
                   optional group l (LIST) { repeated group list { optional int32 element; } } \
                   optional fixed_len_byte_array(4) d (DECIMAL(9,2)); }";
    let schema = Arc::new(parse_message_type(message).unwrap());
    let mut w = SerializedFileWriter::new(
        std::fs::File::create(&pq).unwrap(),
        schema,
        Default::default(),
    )
    .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut c = rg.next_column().unwrap().unwrap();
    c.typed::<Int32Type>()
        .write_batch(&[1, 0], None, None)
        .unwrap();
    c.close().unwrap();
    for _ in 0..2 {
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int32Type>()
            .write_batch(&[7], Some(&[2, 0]), None)
            .unwrap();
        c.close().unwrap();
    }
    let mut c = rg.next_column().unwrap().unwrap();
    c.typed::<Int32Type>()
        .write_batch(&[3, 4], Some(&[3, 3]), Some(&[0, 0]))
        .unwrap();
    c.close().unwrap();
    let mut c = rg.next_column().unwrap().unwrap();
    c.typed::<parquet::data_type::FixedLenByteArrayType>()
        .write_batch(
            &[ByteArray::from(vec![0, 0, 0, 1]).into()],
            Some(&[1, 0]),
            None,
        )
        .unwrap();
    c.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    assert_eq!(read_header(&pq).unwrap(), ["click", "s", "l", "d"]);
    let run = |spec: CsvSpec| {
        let out = dir.join("out");
        let r = convert(&pq, &spec, &out, ConvertOptions::default());
        let _ = std::fs::remove_dir_all(&out);
        r.map(|r| r.info.rows).map_err(|e| e.to_string())
    };
    // Unused columns are never read.
    assert_eq!(run(small_spec(vec![], vec![])), Ok(2));
    let e = run(small_spec(vec![ColumnSpec::ids("s")], vec![])).unwrap_err();
    assert!(
        e.contains("column \"s\": a struct or map of 2 columns"),
        "{e}"
    );
    let e = run(small_spec(vec![ColumnSpec::ids("l")], vec![])).unwrap_err();
    assert!(
        e.contains("column \"l\": a list column can only be a multi-valued feature"),
        "{e}"
    );
    let e = run(small_spec(vec![], vec!["d".into()])).unwrap_err();
    assert!(e.contains("column \"d\": a decimal column"), "{e}");
    let e = run(small_spec(vec![ColumnSpec::ids("nope")], vec![])).unwrap_err();
    assert!(e.contains("missing column"), "{e}");
    // A truncated file is an error, not a panic.
    let bytes = std::fs::read(&pq).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 8, 4] {
        let t = dir.join("cut.parquet");
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let out = dir.join("cut-out");
        assert!(
            convert(
                &t,
                &small_spec(vec![], vec![]),
                &out,
                ConvertOptions::default()
            )
            .is_err()
        );
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_truncation_and_byte_flip_of_a_file_is_a_dataset_or_an_error() {
    let dir = temp_dir("corrupt");
    let pq = dir.join("t.parquet");
    write_parquet(&pq, &table(24), 10, 4, Compression::SNAPPY);
    let bytes = std::fs::read(&pq).unwrap();
    let bad = dir.join("bad.parquet");
    let out = dir.join("out");
    let check = |data: &[u8]| {
        std::fs::write(&bad, data).unwrap();
        let options = ConvertOptions {
            rows_per_shard: 7,
            ..ConvertOptions::default()
        };
        match shards::convert::convert_as(&bad, InputFormat::Parquet, &spec(), &out, options) {
            Ok(_) => std::fs::remove_dir_all(&out).unwrap(),
            Err(_) => assert!(!out.exists()),
        }
    };
    for cut in 0..bytes.len() {
        check(&bytes[..cut]);
    }
    let mut flipped = bytes.clone();
    for i in 0..bytes.len() {
        flipped[i] ^= 0xFF;
        check(&flipped);
        flipped[i] ^= 0xFF;
    }
    std::fs::remove_dir_all(dir).unwrap();
}
