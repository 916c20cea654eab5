//! `resflow bench shards`: how fast the data path is. Batch iteration over a dataset in the
//! page cache (rows/s, sequential and shuffled), CSV conversion (MB/s, Ali-CCP and
//! AliExpress layouts), and the cost of verifying checksums when a dataset is opened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use shards::convert::{ConvertOptions, aliccp_spec, aliexpress_spec, convert_csv, read_header};
use shards::synth::{SynthConfig, generate, write_csv};
use shards::{Dataset, OpenOptions, Result};

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ShardsReport {
    /// Rows in the dataset iterated.
    pub rows: usize,
    /// Batches of 1024 in storage order, rows per second (best of 3 passes).
    pub iterate_sequential_rows_per_s: f64,
    /// Batches of 1024, shuffled, rows per second (best of 3 passes).
    pub iterate_shuffled_rows_per_s: f64,
    /// Opening (and validating) the dataset with checksums, seconds.
    pub open_with_checksums_s: f64,
    /// Opening without checksums, seconds.
    pub open_without_checksums_s: f64,
    /// Bytes of shard files.
    pub dataset_bytes: u64,
    /// Converting the Ali-CCP-layout CSV, MB/s.
    pub convert_aliccp_mb_per_s: f64,
    /// Converting an AliExpress-layout CSV (79 feature columns), MB/s.
    pub convert_aliexpress_mb_per_s: f64,
}

fn best_rate(rows: usize, mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            rows as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn aliexpress_csv(path: &Path, rows: usize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut header = vec!["search_id".to_string()];
    header.extend((1..=16).map(|i| format!("categorical_{i}")));
    header.extend((1..=63).map(|i| format!("numerical_{i}")));
    header.extend(["click".to_string(), "conversion".to_string()]);
    writeln!(out, "{}", header.join(","))?;
    let mut s = 0x9E37_79B9u64;
    for r in 0..rows {
        let mut line = format!("{}", r / 50);
        for i in 0..16 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            line.push_str(&format!(",{}", (s >> 40) % (10 + 30 * i)));
        }
        for _ in 0..63 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            line.push_str(&format!(",{:.6}", (s >> 40) as f64 / (1u64 << 24) as f64));
        }
        let click = (s >> 20).is_multiple_of(25);
        line.push_str(&format!(
            ",{},{}",
            click as u8,
            (click && (s >> 30).is_multiple_of(5)) as u8
        ));
        writeln!(out, "{line}")?;
    }
    out.flush()
}

fn mb_per_s(path: &Path, f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    f()?;
    Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
}

/// Runs the benchmark with `rows` synthetic rows in a temporary directory under `work`.
pub fn run(rows: usize, work: &Path) -> Result<ShardsReport> {
    let dir: PathBuf = work.join(format!("resflow-bench-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| shards::ShardError::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let result = (|| {
        let cfg = SynthConfig {
            rows,
            ..SynthConfig::default()
        };
        let data = dir.join("data");
        generate(&cfg, &data)?;
        let dataset_bytes = std::fs::read_dir(&data)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let time_open = |verify_checksums| -> Result<f64> {
            let t = Instant::now();
            Dataset::open_with(&data, OpenOptions { verify_checksums })?;
            Ok(t.elapsed().as_secs_f64())
        };
        let (open_with, open_without) = (
            time_open(true)?.min(time_open(true)?),
            time_open(false)?.min(time_open(false)?),
        );
        let ds = Dataset::open(&data)?;
        let mut batch = ds.new_batch();
        let mut pass = |seed: Option<u64>| {
            let mut it = ds.batches(1024, seed);
            let mut n = 0;
            while it.next_into(&mut batch) {
                n += batch.rows;
            }
            assert_eq!(n, rows);
        };
        let sequential = best_rate(rows, || pass(None));
        let shuffled = best_rate(rows, || pass(Some(7)));
        let csv = dir.join("aliccp.csv");
        write_csv(&cfg, &csv)?;
        let header = read_header(&csv)?;
        let aliccp = mb_per_s(&csv, || {
            convert_csv(
                &csv,
                &aliccp_spec(&header, None)?,
                &dir.join("c1"),
                ConvertOptions::default(),
            )
            .map(|_| ())
        })?;
        let ae = dir.join("aliexpress.csv");
        aliexpress_csv(&ae, rows / 4).map_err(|e| shards::ShardError::Io {
            path: ae.display().to_string(),
            source: e,
        })?;
        let aliexpress = mb_per_s(&ae, || {
            convert_csv(
                &ae,
                &aliexpress_spec(),
                &dir.join("c2"),
                ConvertOptions::default(),
            )
            .map(|_| ())
        })?;
        Ok(ShardsReport {
            rows,
            iterate_sequential_rows_per_s: sequential,
            iterate_shuffled_rows_per_s: shuffled,
            open_with_checksums_s: open_with,
            open_without_checksums_s: open_without,
            dataset_bytes,
            convert_aliccp_mb_per_s: aliccp,
            convert_aliexpress_mb_per_s: aliexpress,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
