//! Arbitrary bytes as a shard file: opening must return a shard or a typed error, never
//! panic or read out of bounds; an opened shard's columns must be readable in full.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shards::{OpenOptions, Shard};

fuzz_target!(|data: &[u8]| {
    let schema = shards::reader::fuzz_schema();
    for verify_checksums in [true, false] {
        if let Ok(shard) = Shard::from_bytes(data, "fuzz", &schema, OpenOptions { verify_checksums }) {
            let mut sum = shard.labels().len() + shard.single().len() + shard.dense().len();
            sum += shard.bag_offsets(0).len() + shard.bag_ids(0).len() + shard.group().len() + shard.weight().len();
            assert!(sum >= shard.rows());
        }
    }
});
