//! Writes the seed corpus of the `parquet_convert` fuzz target into
//! `fuzz/corpus/parquet_convert/`: small Parquet files with the target's columns (labels
//! `a`, `b`; `u`, `v`, `q`; a list `t`; dense `x`; group `g`) in three codecs, with nulls,
//! dictionary pages and several row groups, and a truncated copy. Run from the repository
//! root: `cargo run -p shards --example make_parquet_corpus`.

use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

const SCHEMA: &str = "message t { required boolean a; optional int32 b; optional binary u (UTF8); \
    optional binary v (UTF8); optional double q; \
    optional group t (LIST) { repeated group list { optional int32 element; } } \
    optional float x; optional int64 g; }";

fn write(
    path: &std::path::Path,
    codec: Compression,
    rows: usize,
    group: usize,
    nulls: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let props = WriterProperties::builder()
        .set_compression(codec)
        .set_dictionary_enabled(true)
        .set_data_page_row_count_limit(4)
        .set_write_batch_size(4)
        .build();
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let mut w = SerializedFileWriter::new(std::fs::File::create(path)?, schema, Arc::new(props))?;
    let words = ["ant", "bee", "cat"];
    for start in (0..rows).step_by(group) {
        let rs: Vec<usize> = (start..(start + group).min(rows)).collect();
        let def = |r: &usize| (!nulls || r % 5 != 4) as i16;
        let present = |r: &&usize| !nulls || **r % 5 != 4;
        let mut rg = w.next_row_group()?;
        let mut c = rg.next_column()?.ok_or("column a")?;
        let a: Vec<bool> = rs.iter().map(|r| r % 3 == 0).collect();
        c.typed::<BoolType>().write_batch(&a, None, None)?;
        c.close()?;
        let mut c = rg.next_column()?.ok_or("column b")?;
        let b: Vec<i32> = rs.iter().map(|r| (r % 6 == 0) as i32).collect();
        c.typed::<Int32Type>()
            .write_batch(&b, Some(&vec![1; rs.len()]), None)?;
        c.close()?;
        for col in ["u", "v"] {
            let mut c = rg.next_column()?.ok_or(col)?;
            let v: Vec<ByteArray> = rs
                .iter()
                .filter(present)
                .map(|r| ByteArray::from(words[r % 3]))
                .collect();
            let d: Vec<i16> = rs.iter().map(def).collect();
            c.typed::<ByteArrayType>().write_batch(&v, Some(&d), None)?;
            c.close()?;
        }
        let mut c = rg.next_column()?.ok_or("column q")?;
        let q: Vec<f64> = rs.iter().map(|r| *r as f64 * 0.5).collect();
        c.typed::<DoubleType>()
            .write_batch(&q, Some(&vec![1; rs.len()]), None)?;
        c.close()?;
        // The list: row r holds r % 3 elements (an empty list when 0), a null list every
        // seventh row.
        let (mut vals, mut d, mut rep) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rs {
            match r % 3 {
                _ if nulls && r % 7 == 6 => (d.push(0), rep.push(0)).1,
                0 => (d.push(1), rep.push(0)).1,
                n => {
                    for k in 0..n {
                        vals.push(((r + k) % 9) as i32);
                        d.push(3);
                        rep.push((k > 0) as i16);
                    }
                }
            }
        }
        let mut c = rg.next_column()?.ok_or("column t")?;
        c.typed::<Int32Type>()
            .write_batch(&vals, Some(&d), Some(&rep))?;
        c.close()?;
        let mut c = rg.next_column()?.ok_or("column x")?;
        let x: Vec<f32> = rs.iter().map(|r| *r as f32 - 3.0).collect();
        c.typed::<parquet::data_type::FloatType>().write_batch(
            &x,
            Some(&vec![1; rs.len()]),
            None,
        )?;
        c.close()?;
        let mut c = rg.next_column()?.ok_or("column g")?;
        let g: Vec<i64> = rs.iter().map(|r| (r / 4) as i64).collect();
        c.typed::<Int64Type>()
            .write_batch(&g, Some(&vec![1; rs.len()]), None)?;
        c.close()?;
        rg.close()?;
    }
    w.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::Path::new("fuzz/corpus/parquet_convert");
    std::fs::create_dir_all(out)?;
    write(
        &out.join("snappy.parquet"),
        Compression::SNAPPY,
        12,
        12,
        false,
    )?;
    let zstd = Compression::ZSTD(ZstdLevel::try_new(1)?);
    write(&out.join("zstd-nulls.parquet"), zstd, 10, 10, true)?;
    write(
        &out.join("lz4-groups.parquet"),
        Compression::LZ4_RAW,
        14,
        5,
        false,
    )?;
    let valid = std::fs::read(out.join("snappy.parquet"))?;
    std::fs::write(out.join("truncated.parquet"), &valid[..valid.len() / 2])?;
    println!("wrote 4 seeds to {}", out.display());
    Ok(())
}
