//! Arbitrary bytes as a Parquet file, converted with a generic spec (a boolean or integer
//! label pair, hashed ids, a learned vocabulary, percentile buckets, a list bag, a dense
//! column, a group): a dataset or a typed error, never a panic; a failed conversion leaves
//! no output directory.
#![no_main]

mod convert_common;

use convert_common::{Scratch, spec};
use libfuzzer_sys::fuzz_target;
use shards::convert::InputFormat;

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::new("parquet", "parquet", data);
    let _ = shards::convert::read_header(&scratch.input);
    scratch.convert_each(InputFormat::Parquet, &[spec(true), spec(false)]);
});
