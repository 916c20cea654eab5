//! Arbitrary bytes as a CSV file, converted with the AliExpress layout and with a generic
//! spec (hashed ids, a learned vocabulary, percentile buckets, a bag, a dense column, a
//! group): a dataset or a typed error, never a
//! panic; a failed conversion leaves no output directory.
#![no_main]

mod convert_common;

use convert_common::{Scratch, spec};
use libfuzzer_sys::fuzz_target;
use shards::convert::{InputFormat, aliexpress_spec};

fuzz_target!(|data: &[u8]| {
    let scratch = Scratch::new("csv", "csv", data);
    scratch.convert_each(InputFormat::Csv, &[aliexpress_spec(), spec(true)]);
});
