//! Shards: round trips, batches, corrupt files, converters and the synthetic generator.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use shards::convert::{
    ConvertOptions, CsvSpec, aliccp_spec, aliexpress_spec, convert_csv, read_header,
};
use shards::synth::{SynthConfig, generate, write_csv};
use shards::{
    Dataset, DenseSpec, FORMAT_VERSION, MultiField, OpenOptions, Pooling, Row, Schema, Shard,
    ShardError, ShardWriter, SingleField,
};

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shards-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[derive(Debug, Clone)]
struct OwnedRow {
    labels: Vec<f32>,
    single: Vec<u32>,
    bags: Vec<Vec<u32>>,
    dense: Vec<f32>,
    group: u64,
    weight: f32,
}

fn schema(
    tasks: usize,
    single: usize,
    multi: usize,
    dense: usize,
    group: bool,
    weight: bool,
) -> Schema {
    Schema {
        format_version: FORMAT_VERSION,
        tasks: (0..tasks).map(|t| format!("task{t}")).collect(),
        single: (0..single)
            .map(|k| SingleField {
                name: format!("s{k}"),
                vocab: 5 + k as u32,
            })
            .collect(),
        multi: (0..multi)
            .map(|k| MultiField {
                name: format!("m{k}"),
                vocab: 7,
                pooling: Pooling::Sum,
            })
            .collect(),
        dense: DenseSpec {
            count: dense,
            ..DenseSpec::default()
        },
        group: group.then(|| "g".to_string()),
        weight,
        soft_labels: false,
        targets: Vec::new(),
        item: None,
        encodings: Vec::new(),
    }
}

fn rows_for(s: &Schema, n: usize, seed: u64) -> Vec<OwnedRow> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    (0..n)
        .map(|_| OwnedRow {
            labels: (0..s.tasks.len()).map(|_| next(2) as f32).collect(),
            single: s
                .single
                .iter()
                .map(|f| next(f.vocab as u64) as u32)
                .collect(),
            bags: s
                .multi
                .iter()
                .map(|f| (0..next(4)).map(|_| next(f.vocab as u64) as u32).collect())
                .collect(),
            dense: (0..s.dense.count)
                .map(|_| next(1000) as f32 / 10.0 - 50.0)
                .collect(),
            group: if s.group.is_some() { next(1 << 40) } else { 0 },
            weight: if s.weight {
                next(100) as f32 / 10.0
            } else {
                1.0
            },
        })
        .collect()
}

fn write(dir: &Path, s: &Schema, rows: &[OwnedRow], per_shard: usize) {
    let mut w = ShardWriter::create(dir, s.clone(), per_shard, false).unwrap();
    for r in rows {
        let bags: Vec<&[u32]> = r.bags.iter().map(|b| b.as_slice()).collect();
        w.push(&Row {
            labels: &r.labels,
            single: &r.single,
            bags: &bags,
            dense: &r.dense,
            group: r.group,
            weight: r.weight,
        })
        .unwrap();
    }
    let info = w.finish().unwrap();
    assert_eq!(info.rows as usize, rows.len());
}

/// Reads every row back in storage order.
fn read_all(ds: &Dataset, batch_size: usize, seed: Option<u64>) -> Vec<OwnedRow> {
    let s = ds.schema();
    let mut out = vec![];
    let mut batch = ds.new_batch();
    let mut it = ds.batches(batch_size, seed).with_window(5);
    while it.next_into(&mut batch) {
        for v in batch.split(3) {
            for r in 0..v.rows() {
                let t = s.tasks.len();
                let sf = s.single.len();
                out.push(OwnedRow {
                    labels: v.labels()[r * t..(r + 1) * t].to_vec(),
                    single: v.single()[r * sf..(r + 1) * sf].to_vec(),
                    bags: (0..s.multi.len())
                        .map(|k| {
                            let (o, ids) = v.bag(k);
                            ids[(o[r] - o[0]) as usize..(o[r + 1] - o[0]) as usize].to_vec()
                        })
                        .collect(),
                    dense: v.dense()[r * s.dense.count..(r + 1) * s.dense.count].to_vec(),
                    group: v.group().get(r).copied().unwrap_or(0),
                    weight: v.weight().get(r).copied().unwrap_or(1.0),
                });
            }
        }
    }
    out
}

fn same(a: &OwnedRow, b: &OwnedRow) -> bool {
    a.labels == b.labels
        && a.single == b.single
        && a.bags == b.bags
        && a.dense == b.dense
        && a.group == b.group
        && a.weight == b.weight
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rows_round_trip(tasks in 1usize..4, single in 0usize..4, multi in 0usize..3, dense in 0usize..3,
                       group: bool, weight: bool, n in 0usize..40, per_shard in 1usize..17, seed: u64) {
        let s = schema(tasks, single, multi, dense, group, weight);
        let rows = rows_for(&s, n, seed);
        let dir = temp_dir(&format!("rt-{seed}"));
        write(&dir, &s, &rows, per_shard);
        let ds = Dataset::open(&dir).unwrap();
        prop_assert_eq!(ds.rows(), n);
        prop_assert_eq!(ds.shards().len(), n.div_ceil(per_shard));
        let back = read_all(&ds, 4, None);
        prop_assert_eq!(back.len(), n);
        for (a, b) in rows.iter().zip(&back) {
            prop_assert!(same(a, b), "{:?} != {:?}", a, b);
        }
        // Shuffled: every row exactly once, reproducible, seed-dependent.
        let mut shuffled = read_all(&ds, 7, Some(3));
        prop_assert_eq!(shuffled.len(), n);
        let again = read_all(&ds, 7, Some(3));
        prop_assert!(shuffled.iter().zip(&again).all(|(a, b)| same(a, b)));
        let key = |r: &OwnedRow| format!("{:?}", r);
        let mut want: Vec<String> = rows.iter().map(key).collect();
        let mut got: Vec<String> = shuffled.drain(..).map(|r| key(&r)).collect();
        want.sort();
        got.sort();
        prop_assert_eq!(want, got);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn small_dataset(name: &str) -> (PathBuf, Schema) {
    let s = schema(2, 2, 1, 1, true, true);
    let dir = temp_dir(name);
    write(&dir, &s, &rows_for(&s, 30, 9), 1000);
    (dir, s)
}

#[test]
fn corrupt_shards_are_typed_errors_never_panics() {
    let (dir, s) = small_dataset("corrupt");
    let bytes = std::fs::read(dir.join("shard-00000.rfs")).unwrap();
    let strict = OpenOptions {
        verify_checksums: true,
    };
    let lax = OpenOptions {
        verify_checksums: false,
    };
    assert!(Shard::from_bytes(&bytes, "ok", &s, strict).is_ok());
    // Every truncation.
    for cut in 0..bytes.len() {
        assert!(
            Shard::from_bytes(&bytes[..cut], "t", &s, strict).is_err(),
            "truncated at {cut}"
        );
    }
    // Every single-bit flip: an error with checksums; without them, an error or a valid
    // shard, never a panic.
    for pos in 0..bytes.len() {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        let _ = Shard::from_bytes(&b, "flip", &s, lax);
        let r = Shard::from_bytes(&b, "flip", &s, strict);
        let in_padding = r.is_ok();
        if in_padding {
            // Only header padding and inter-section padding may change silently.
            continue;
        }
        assert!(matches!(
            r,
            Err(ShardError::Format { .. }) | Err(ShardError::Value { .. })
        ));
    }
    // Another schema: fingerprint mismatch.
    let other = schema(3, 2, 1, 1, true, true);
    let e = Shard::from_bytes(&bytes, "x", &other, strict)
        .unwrap_err()
        .to_string();
    assert!(e.contains("fingerprint") || e.contains("sections"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_values_are_caught_even_without_checksums() {
    let (dir, s) = small_dataset("values");
    let bytes = std::fs::read(dir.join("shard-00000.rfs")).unwrap();
    let lax = OpenOptions {
        verify_checksums: false,
    };
    // Locate sections through the table: labels first, single ids second, bag offsets third.
    let entry = |k: usize| {
        let e = 32 + 32 * k;
        u64::from_le_bytes(bytes[e + 8..e + 16].try_into().unwrap()) as usize
    };
    let (labels, single, offsets) = (entry(0), entry(1), entry(2));
    let mut nan = bytes.clone();
    nan[labels..labels + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let e = Shard::from_bytes(&nan, "nan", &s, lax)
        .unwrap_err()
        .to_string();
    assert!(e.contains("labels") && e.contains("row 0"), "{e}");
    let mut big = bytes.clone();
    big[single + 4..single + 8].copy_from_slice(&1000u32.to_le_bytes());
    let e = Shard::from_bytes(&big, "id", &s, lax)
        .unwrap_err()
        .to_string();
    assert!(e.contains("id 1000") && e.contains("row 0"), "{e}");
    let mut down = bytes.clone();
    down[offsets + 8..offsets + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = Shard::from_bytes(&down, "off", &s, lax)
        .unwrap_err()
        .to_string();
    assert!(e.contains("offsets"), "{e}");
    // The checksum catches all three when enabled.
    for b in [&nan, &big, &down] {
        let e = Shard::from_bytes(b, "crc", &s, OpenOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_fuzz_corpus_replays_without_panics() {
    // The seed corpus of the shard_open fuzz target, with that target's schema.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/shard_open");
    let s = shards::reader::fuzz_schema();
    let mut n = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for opts in [
            OpenOptions {
                verify_checksums: true,
            },
            OpenOptions {
                verify_checksums: false,
            },
        ] {
            let _ = Shard::from_bytes(&bytes, "corpus", &s, opts);
        }
        n += 1;
    }
    assert!(n >= 3, "the corpus should hold seed files, found {n}");
}

#[test]
fn writer_refuses_bad_rows_and_used_directories() {
    let s = schema(2, 1, 1, 0, false, false);
    let dir = temp_dir("refuse");
    let mut w = ShardWriter::create(&dir, s.clone(), 10, false).unwrap();
    let row = |labels: &'static [f32], single: &'static [u32]| Row {
        labels,
        single,
        bags: &[&[]],
        dense: &[],
        group: 0,
        weight: 1.0,
    };
    assert!(w.push(&row(&[1.0, 0.0], &[4])).is_ok());
    assert!(
        w.push(&row(&[1.0, 0.5], &[4]))
            .unwrap_err()
            .to_string()
            .contains("label")
    );
    assert!(
        w.push(&row(&[1.0, 0.0], &[5]))
            .unwrap_err()
            .to_string()
            .contains("out of range")
    );
    assert!(w.push(&row(&[1.0], &[4])).is_err());
    w.finish().unwrap();
    assert!(
        ShardWriter::create(&dir, s, 10, false)
            .unwrap_err()
            .to_string()
            .contains("already holds")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn synthetic_funnel_has_its_shape() {
    let dir = temp_dir("synth");
    let cfg = SynthConfig {
        rows: 60_000,
        rows_per_shard: 20_000,
        ..SynthConfig::default()
    };
    let info = generate(&cfg, &dir).unwrap();
    assert_eq!((info.rows, info.shards), (60_000, 3));
    let ds = Dataset::open(&dir).unwrap();
    let (mut clicks, mut convs, mut n) = (0.0, 0.0, 0.0);
    let mut batch = ds.new_batch();
    let mut it = ds.batches(4096, None);
    let user = ds
        .schema()
        .single
        .iter()
        .position(|f| f.name == "101")
        .unwrap();
    let mut seen: std::collections::HashMap<u64, u32> = Default::default();
    while it.next_into(&mut batch) {
        let v = batch.view();
        for r in 0..v.rows() {
            let (c, y) = (v.labels()[2 * r], v.labels()[2 * r + 1]);
            assert!(y <= c, "a conversion without a click");
            clicks += c as f64;
            convs += y as f64;
            n += 1.0;
            let u = v.single()[r * 17 + user];
            assert_eq!(
                *seen.entry(v.group()[r]).or_insert(u),
                u,
                "the user changes within a session"
            );
        }
    }
    let (ctr, cvr) = (clicks / n, convs / clicks);
    assert!((0.025..0.06).contains(&ctr), "click rate {ctr}");
    assert!((0.08..0.25).contains(&cvr), "conversion given click {cvr}");
    // Same seed, same bytes.
    let again = temp_dir("synth-again");
    generate(&cfg, &again).unwrap();
    assert_eq!(
        std::fs::read(dir.join("shard-00001.rfs")).unwrap(),
        std::fs::read(again.join("shard-00001.rfs")).unwrap()
    );
    // Three tasks: order implies cart implies click.
    let three = temp_dir("synth-3");
    generate(
        &SynthConfig {
            rows: 20_000,
            tasks: 3,
            ..SynthConfig::default()
        },
        &three,
    )
    .unwrap();
    let ds3 = Dataset::open(&three).unwrap();
    assert_eq!(ds3.schema().tasks, vec!["click", "cart", "order"]);
    let mut it = ds3.batches(4096, None);
    // The two-task batch is reshaped for the three-task dataset.
    while it.next_into(&mut batch) {
        for r in batch.labels.chunks_exact(3) {
            assert!(r[2] <= r[1] && r[1] <= r[0]);
        }
    }
    for d in [dir, again, three] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn aliccp_csv_converts_to_the_same_rows_as_the_generator() {
    let cfg = SynthConfig {
        rows: 3_000,
        max_vocab: 300,
        ..SynthConfig::default()
    };
    let (direct, csv_dir) = (temp_dir("direct"), temp_dir("csv"));
    generate(&cfg, &direct).unwrap();
    std::fs::create_dir_all(&csv_dir).unwrap();
    let csv = csv_dir.join("aliccp.csv");
    write_csv(&cfg, &csv).unwrap();
    let out = csv_dir.join("converted");
    let spec = aliccp_spec(&read_header(&csv).unwrap(), None).unwrap();
    let report = convert_csv(&csv, &spec, &out, ConvertOptions::default()).unwrap();
    assert_eq!(report.funnel_violations, 0);
    let (a, b) = (
        Dataset::open(&direct).unwrap(),
        Dataset::open(&out).unwrap(),
    );
    let (ra, rb) = (read_all(&a, 100, None), read_all(&b, 100, None));
    assert_eq!(ra.len(), 3_000);
    assert!(ra.iter().zip(&rb).all(|(x, y)| same(x, y)));
    for d in [direct, csv_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// A small AliExpress-layout file: `search_id, categorical_1..16, numerical_1..63, click, conversion`.
fn aliexpress_csv(path: &Path, rows: &[(u64, u32, f32, u8, u8)]) {
    let mut text = String::from("search_id");
    for i in 1..=16 {
        text.push_str(&format!(",categorical_{i}"));
    }
    for i in 1..=63 {
        text.push_str(&format!(",numerical_{i}"));
    }
    text.push_str(",click,conversion\n");
    for &(sid, cat, num, c, y) in rows {
        text.push_str(&sid.to_string());
        for i in 0..16 {
            text.push_str(&format!(",{}", cat + i));
        }
        for i in 0..63 {
            text.push_str(&format!(",{}", num + i as f32 * 0.5));
        }
        text.push_str(&format!(",{c},{y}\n"));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn aliexpress_converter_and_its_errors() {
    let dir = temp_dir("ae");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("ae.csv");
    aliexpress_csv(
        &csv,
        &[
            (363, 7, 0.25, 0, 0),
            (363, 2, 1.0, 1, 1),
            (12, 0, -3.5, 1, 0),
            (12, 5, 0.0, 0, 1),
        ],
    );
    let out = dir.join("ds");
    let raw = CsvSpec {
        standardize: false,
        ..aliexpress_spec()
    };
    let r = convert_csv(&csv, &raw, &out, ConvertOptions::default()).unwrap();
    assert_eq!((r.info.rows, r.funnel_violations), (4, 1));
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(
        ds.schema().single[0].vocab,
        8,
        "vocab learned as max id + 1"
    );
    assert_eq!(ds.schema().single[15].vocab, 8 + 15);
    let back = read_all(&ds, 10, None);
    assert_eq!(back[2].group, 12);
    assert_eq!(back[2].dense[2], -3.5 + 1.0);
    assert_eq!(back[1].labels, vec![1.0, 1.0]);
    // Strict mode: the conversion without a click (line 5) is an error, and nothing is left.
    let strict_out = dir.join("strict");
    let e = convert_csv(
        &csv,
        &aliexpress_spec(),
        &strict_out,
        ConvertOptions {
            strict: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains(":5:"), "{e}");
    assert!(!strict_out.exists());
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial"))
    );

    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let case = |name: &str, edit: &dyn Fn(&mut Vec<String>), needle: &str| {
        let mut l = lines.clone();
        edit(&mut l);
        let p = dir.join(format!("{name}.csv"));
        std::fs::write(&p, l.join("\n")).unwrap();
        let e = convert_csv(
            &p,
            &aliexpress_spec(),
            &dir.join(format!("{name}-out")),
            ConvertOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(needle), "{name}: {e}");
        assert!(!dir.join(format!("{name}-out")).exists());
    };
    case(
        "short",
        &|l| {
            l[2] = l[2].rsplit_once(',').unwrap().0.to_string();
        },
        ":3:",
    );
    case(
        "nonnumeric",
        &|l| {
            l[1] = l[1].replace(",0,0", ",yes,0");
        },
        "not a number",
    );
    case(
        "two",
        &|l| {
            let n = l[3].len();
            l[3].replace_range(n - 3.., "2,0");
        },
        "not 0 or 1",
    );
    case(
        "missing",
        &|l| {
            l[0] = l[0].replace("categorical_3", "cat3");
        },
        "categorical_3",
    );
    case("empty", &|l| l.clear(), "empty file");
    case(
        "nan",
        &|l| {
            l[1] = l[1].replace(",0.25,", ",NaN,");
        },
        "not a finite number",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generic_csv_spec_with_hashing_bags_and_weights() {
    let dir = temp_dir("generic");
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("g.csv");
    std::fs::write(&csv, "user,query,\"tags\",price,w,clicked\nalice,q1,a;b;a,1.5,2,1\nbob,q1,,0.5,1,0\n\"car, ol\",q2,b,2,0.5,1\n").unwrap();
    let spec: CsvSpec = serde_json::from_str(
        r#"{"labels": ["clicked"], "single": [{"column": "user", "hash_buckets": 64}],
            "multi": [{"column": "tags", "hash_buckets": 16, "pooling": "mean"}],
            "dense": ["price"], "group": "query", "weight": "w"}"#,
    )
    .unwrap();
    let out = dir.join("ds");
    convert_csv(&csv, &spec, &out, ConvertOptions::default()).unwrap();
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.schema().single[0].vocab, 64);
    assert_eq!(ds.schema().multi[0].pooling, Pooling::Mean);
    let rows = read_all(&ds, 8, None);
    assert_eq!(rows[0].bags[0].len(), 3);
    assert_eq!(
        rows[0].bags[0][0], rows[0].bags[0][2],
        "equal values hash equally"
    );
    assert!(rows[1].bags[0].is_empty());
    assert_eq!((rows[0].weight, rows[2].weight), (2.0, 0.5));
    assert_eq!(rows[0].group, rows[1].group);
    assert_ne!(rows[0].group, rows[2].group);
    // Standardised by default: prices 1.5, 0.5, 2 have mean 4/3 and (population) std
    // sqrt(7/18), so 2 becomes (2 - 4/3) / sqrt(7/18) = 1.0690...
    let want = (2.0f64 - 4.0 / 3.0) / (7.0f64 / 18.0).sqrt();
    assert!(
        (rows[2].dense[0] as f64 - want).abs() < 1e-6,
        "{:?}",
        rows[2].dense
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
