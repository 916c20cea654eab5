//! Converting a Parquet file holds one batch of rows and the pages being decoded, not the
//! file: the peak heap of a conversion does not grow with the number of row groups, and
//! stays far below the size of the decoded table. (One test in its own binary, so that
//! nothing else allocates while it measures.)
#![cfg(feature = "parquet")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parquet::basic::Compression;
use parquet::data_type::{BoolType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use shards::convert::{BagSpec, ColumnSpec, ConvertOptions, CsvSpec, convert};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, tracking the bytes live and their peak.
struct PeakAllocator;

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are side
// effects that do not touch the memory.
unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

/// Rows per row group of the test files.
const GROUP: usize = 10_000;

/// Writes `groups` row groups of a click label, a user id, a dense column and a bag.
fn write(path: &std::path::Path, groups: usize) {
    let schema = parse_message_type(
        "message t { required boolean click; required int64 user; required double x; \
         optional group tags (LIST) { repeated group list { required int32 element; } } }",
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_data_page_row_count_limit(2_000)
        .set_write_batch_size(2_000)
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    for g in 0..groups {
        let rows: Vec<usize> = (g * GROUP..(g + 1) * GROUP).collect();
        let mut rg = w.next_row_group().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        let click: Vec<bool> = rows.iter().map(|r| r % 7 == 0).collect();
        c.typed::<BoolType>()
            .write_batch(&click, None, None)
            .unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        let user: Vec<i64> = rows.iter().map(|r| (r * 31 % 997) as i64).collect();
        c.typed::<Int64Type>()
            .write_batch(&user, None, None)
            .unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        let x: Vec<f64> = rows.iter().map(|r| (r % 101) as f64 * 0.25).collect();
        c.typed::<DoubleType>().write_batch(&x, None, None).unwrap();
        c.close().unwrap();
        // Three tags per row: def 2 = an element, rep 1 = the list goes on.
        let mut c = rg.next_column().unwrap().unwrap();
        let tags: Vec<i32> = rows
            .iter()
            .flat_map(|&r| [0, 1, 2].map(|k| ((r + k) % 50) as i32))
            .collect();
        let def = vec![2i16; tags.len()];
        let rep: Vec<i16> = (0..tags.len()).map(|i| (i % 3 != 0) as i16).collect();
        c.typed::<Int32Type>()
            .write_batch(&tags, Some(&def), Some(&rep))
            .unwrap();
        c.close().unwrap();
        rg.close().unwrap();
    }
    w.close().unwrap();
}

fn spec() -> CsvSpec {
    CsvSpec {
        labels: vec!["click".into()],
        tasks: vec![],
        targets: vec![],
        single: vec![ColumnSpec::ids("user")],
        multi: vec![BagSpec {
            column: "tags".into(),
            separator: ';',
            vocab: Some(50),
            hash_buckets: None,
            vocabulary: false,
            min_count: None,
            pooling: shards::Pooling::Sum,
        }],
        dense: vec!["x".into()],
        group: None,
        weight: None,
        item: None,
        soft_labels: false,
        funnel: false,
        standardize: true,
    }
}

/// The peak heap above what was live before, while converting a file of `groups` row groups.
fn peak_of_conversion(dir: &std::path::Path, groups: usize) -> usize {
    let input = dir.join(format!("t{groups}.parquet"));
    write(&input, groups);
    let out = dir.join(format!("out{groups}"));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let options = ConvertOptions {
        rows_per_shard: 4_096,
        ..ConvertOptions::default()
    };
    let r = convert(&input, &spec(), &out, options).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(r.info.rows, (groups * GROUP) as u64);
    peak
}

#[test]
fn conversion_memory_is_bounded_by_a_row_group_not_the_file() {
    let dir = std::env::temp_dir().join(format!("shards-parquet-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let small = peak_of_conversion(&dir, 4);
    let large = peak_of_conversion(&dir, 32);
    // The decoded table of the large file: 320,000 rows of a label, an id, a dense value
    // and three tags, in the engine's types (f32 label, u32 ids, f32 dense, u64 offset).
    let decoded = 32 * GROUP * (4 + 4 + 4 + 3 * 4 + 8);
    println!("peak heap: {small} bytes for 4 row groups, {large} for 32 (decoded table {decoded})");
    assert!(
        large < decoded / 4,
        "{large} bytes live for a {decoded}-byte table"
    );
    assert!(
        large < small + small / 2,
        "the peak grew with the file: {small} -> {large} bytes"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
