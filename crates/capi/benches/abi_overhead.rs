//! The cost of the C ABI itself: one request of the Ali-CCP model scored by calling the
//! Rust [`Scorer`] directly and through `resflow_score`, interleaved call by call in one
//! process, on the same model and the same requests; one thread.
//!
//! ```text
//! cargo bench -p capi --bench abi_overhead                  # 1, 100, 500, 2000 candidates
//! cargo bench -p capi --bench abi_overhead -- --save m.safetensors   # also write the model
//! ```
//!
//! `--save` writes the benchmark's model so the C++ host can time the same model:
//! `resflow_host m.safetensors --bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::RequestData;
use resflow::config::TaskConfig;
use resflow::{Bag, Model, ModelConfig, Request, Scorer};
use resflow_capi::*;

/// Table cap, as `resflow bench score` uses by default.
const MAX_VOCAB: u32 = 100_000;

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let save = args
        .iter()
        .position(|a| a == "--save")
        .and_then(|i| args.get(i + 1).cloned());
    let config = ModelConfig {
        tasks: ["click", "conversion"]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        request_fields: bench::score::ALICCP_REQUEST_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..ModelConfig::default()
    };
    let model = Model::random(config, bench::score::aliccp_layout(MAX_VOCAB), 1).unwrap();
    let bytes = model.to_bytes().unwrap();
    if let Some(path) = &save {
        std::fs::write(path, &bytes).unwrap();
        println!("wrote {path}");
    }
    let scorer = Scorer::new(model).unwrap();
    let mut handle = std::ptr::null_mut();
    // SAFETY: `bytes` is a live buffer of `bytes.len()` bytes; `handle` is writable.
    let st = unsafe {
        resflow_model_from_bytes(
            RESFLOW_ABI_VERSION,
            bytes.as_ptr(),
            bytes.len(),
            &mut handle,
        )
    };
    assert_eq!(st, ResflowStatus::Ok);
    println!(
        "kernel {}, Ali-CCP layout capped at {MAX_VOCAB} rows, one thread, interleaved",
        tensor::Tier::active().name()
    );
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>12} {:>10}",
        "candidates", "rust p50 ms", "rust p99 ms", "C ABI p50", "C ABI p99", "overhead"
    );
    for n in [1usize, 100, 500, 2000] {
        let calls = (4000 * 100 / n.max(100)).max(100);
        let data: Vec<RequestData> = (0..8)
            .map(|i| RequestData::random(&scorer, n, 1000 + i))
            .collect();
        let tasks = scorer.tasks();
        let (mut probs, mut fused) = (vec![0.0f32; n * tasks], vec![0.0f32; n]);
        let mut ws = scorer.workspace(n);
        let mut cws = std::ptr::null_mut();
        // SAFETY: the model handle is live; the out pointer is writable.
        let st = unsafe { resflow_workspace_new(handle, n, &mut cws) };
        assert_eq!(st, ResflowStatus::Ok);
        let (mut direct, mut abi) = (Vec::new(), Vec::new());
        for i in 0..calls + 3 {
            let d = &data[i % data.len()];
            // Direct: the Rust request, built as a Rust caller would.
            let bags: Vec<Bag> = d
                .bags
                .iter()
                .map(|b| Bag {
                    offsets: &b.offsets,
                    ids: &b.ids,
                })
                .collect();
            let rbags: Vec<Bag> = d
                .request_bags
                .iter()
                .map(|b| Bag {
                    offsets: &b.offsets,
                    ids: &b.ids,
                })
                .collect();
            let req = Request {
                candidates: n,
                ids: &d.ids,
                bags: &bags,
                dense: &d.dense,
                dense_stride: d.dense_stride,
                request_ids: &d.request_ids,
                request_bags: &rbags,
            };
            // Through the ABI: the C request, built as a C caller would.
            let cbag = |b: &resflow::BagBuffer| ResflowBag {
                offsets: b.offsets.as_ptr(),
                offsets_len: b.offsets.len(),
                ids: b.ids.as_ptr(),
                ids_len: b.ids.len(),
            };
            let cbags: Vec<ResflowBag> = d.bags.iter().map(cbag).collect();
            let crbags: Vec<ResflowBag> = d.request_bags.iter().map(cbag).collect();
            let creq = ResflowRequest {
                struct_size: size_of::<ResflowRequest>(),
                candidates: n,
                ids: d.ids.as_ptr(),
                ids_len: d.ids.len(),
                bags: cbags.as_ptr(),
                bags_len: cbags.len(),
                dense: d.dense.as_ptr(),
                dense_len: d.dense.len(),
                dense_stride: d.dense_stride,
                request_ids: d.request_ids.as_ptr(),
                request_ids_len: d.request_ids.len(),
                request_bags: crbags.as_ptr(),
                request_bags_len: crbags.len(),
            };
            // Alternate which goes first so neither always has the warmer cache.
            for k in 0..2 {
                let via_abi = (i + k) % 2 == 1;
                let start = Instant::now();
                if via_abi {
                    // SAFETY: every pointer in `creq` borrows a live vector of the stated
                    // length; the outputs are live and disjoint.
                    let st = unsafe {
                        resflow_score(
                            handle,
                            cws,
                            &creq,
                            probs.as_mut_ptr(),
                            probs.len(),
                            fused.as_mut_ptr(),
                            fused.len(),
                        )
                    };
                    assert_eq!(st, ResflowStatus::Ok);
                } else {
                    scorer.score(&mut ws, &req, &mut probs, &mut fused).unwrap();
                }
                let t = start.elapsed().as_secs_f64();
                if i >= 3 {
                    if via_abi { &mut abi } else { &mut direct }.push(t);
                }
            }
        }
        direct.sort_by(f64::total_cmp);
        abi.sort_by(f64::total_cmp);
        let (d50, a50) = (percentile(&direct, 0.5), percentile(&abi, 0.5));
        println!(
            "{n:>10} {:>12.4} {:>12.4} {:>12.4} {:>12.4} {:>9.2}%",
            d50 * 1e3,
            percentile(&direct, 0.99) * 1e3,
            a50 * 1e3,
            percentile(&abi, 0.99) * 1e3,
            (a50 / d50 - 1.0) * 100.0
        );
        // SAFETY: `cws` came from `resflow_workspace_new` and is freed once.
        unsafe { resflow_workspace_free(cws) };
    }
    // SAFETY: `handle` came from `resflow_model_from_bytes`; its workspaces are freed.
    unsafe { resflow_model_free(handle) };
}
