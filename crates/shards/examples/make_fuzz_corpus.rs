//! Writes the seed corpus of the `shard_open` fuzz target into `fuzz/corpus/shard_open/`:
//! a valid shard of [`shards::reader::fuzz_schema`], a truncated copy, a copy with a flipped
//! byte in a section, and an empty file. Run from the repository root:
//! `cargo run -p shards --example make_fuzz_corpus`.

use shards::{Row, ShardWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = shards::reader::fuzz_schema();
    let tmp = std::env::temp_dir().join(format!("fuzz-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut w = ShardWriter::create(&tmp, schema, 1000, false)?;
    for r in 0..6u32 {
        let tags: Vec<u32> = (0..r % 3).collect();
        w.push(&Row {
            labels: &[(r % 2) as f32, (r % 4 == 1) as u32 as f32],
            single: &[r % 10, (r * 3) % 20],
            bags: &[&tags],
            dense: &[r as f32 * 0.5, -1.0],
            group: (r / 3) as u64,
            weight: 1.0,
        })?;
    }
    w.finish()?;
    let valid = std::fs::read(tmp.join(shards::shard_name(0)))?;
    let out = std::path::Path::new("fuzz/corpus/shard_open");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("valid.rfs"), &valid)?;
    std::fs::write(out.join("truncated.rfs"), &valid[..valid.len() / 2])?;
    let mut flipped = valid.clone();
    let last = flipped.len() - 70;
    flipped[last] ^= 0xff;
    std::fs::write(out.join("flipped.rfs"), &flipped)?;
    std::fs::write(out.join("empty.rfs"), [])?;
    std::fs::remove_dir_all(&tmp)?;
    println!("wrote 4 seeds to {}", out.display());
    Ok(())
}
