//! Fuzz target: `resflow_score` with arguments shaped by the input: candidate counts,
//! lengths that may not add up, offsets that may not be monotone, ids that may be out of
//! range, any dense bits (NaN included), any stride, null arrays, short outputs. Every
//! pointer is valid for the length it is given (the C contract); everything else is fair
//! game. The call must return a status, never crash, and never report an internal error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use resflow::config::TaskConfig;
use resflow::{Field, InputLayout, ModelConfig, Pooling, Model};
use resflow_capi::*;

/// The model handle's address (the handle lives for the whole process).
fn model() -> *const ResflowModel {
    static MODEL: OnceLock<usize> = OnceLock::new();
    *MODEL.get_or_init(|| {
        let field = |name: &str, vocab, bag| Field {
            name: name.into(),
            vocab,
            bag,
        };
        let layout = InputLayout {
            fields: vec![
                field("item", 20, None),
                field("user", 10, None),
                field("user_tags", 6, Some(Pooling::Sum)),
                field("item_tags", 8, Some(Pooling::Mean)),
            ],
            dense: 2,
            tasks: vec!["click".into(), "conversion".into()],
        };
        let config = ModelConfig {
            embedding_dim: 4,
            hidden: vec![4],
            tasks: ["click", "conversion"]
                .iter()
                .map(|n| TaskConfig {
                    name: n.to_string(),
                    pos_weight: 1.0,
                    loss_weight: 1.0,
                })
                .collect(),
            request_fields: vec!["user".into(), "user_tags".into()],
            ..ModelConfig::default()
        };
        let bytes = Model::random(config, layout, 1)
            .unwrap()
            .to_bytes()
            .unwrap();
        let mut m = std::ptr::null_mut();
        // SAFETY: `bytes` is live for its length; `m` is writable.
        let st = unsafe {
            resflow_model_from_bytes(RESFLOW_ABI_VERSION, bytes.as_ptr(), bytes.len(), &mut m)
        };
        assert_eq!(st, ResflowStatus::Ok);
        m as usize
    }) as *const ResflowModel
}

/// Reads the input a byte at a time (zeros once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// A length near `typical`: usually it, sometimes off by a little.
    fn len(&mut self, typical: usize) -> usize {
        match self.u8() % 8 {
            0 => typical.saturating_sub(1),
            1 => typical + 1,
            2 => self.u8() as usize,
            _ => typical,
        }
    }
}

fn array<T>(v: &[T], null: bool) -> *const T {
    if null { std::ptr::null() } else { v.as_ptr() }
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    let mut b = Bytes(data);
    let n = (b.u8() % 12) as usize;
    let nulls = b.u8();
    let ids: Vec<u32> = (0..b.len(n)).map(|_| b.u32() % 24).collect();
    let make_bag = |b: &mut Bytes, rows: usize| {
        let offsets: Vec<u64> = (0..b.len(rows + 1))
            .map(|_| u64::from(b.u8() % 8))
            .collect();
        let ids: Vec<u32> = (0..b.len(offsets.last().copied().unwrap_or(0) as usize))
            .map(|_| b.u32() % 10)
            .collect();
        (offsets, ids)
    };
    let cand_bag = make_bag(&mut b, n);
    let req_bag = make_bag(&mut b, 1);
    let stride = match b.u8() % 4 {
        0 => usize::MAX / 3,
        1 => b.u8() as usize,
        _ => 2,
    };
    let dense: Vec<f32> = (0..b.len(n * 2))
        .map(|_| f32::from_bits(if b.u8() % 4 == 0 { b.u32() } else { 0x3f00_0000 }))
        .collect();
    let request_ids: Vec<u32> = (0..b.len(1)).map(|_| b.u32() % 12).collect();
    let bag = |(o, i): &(Vec<u64>, Vec<u32>), null: bool| ResflowBag {
        offsets: array(o, null),
        offsets_len: o.len(),
        ids: i.as_ptr(),
        ids_len: i.len(),
    };
    let bags = [bag(&cand_bag, nulls & 1 != 0)];
    let request_bags = [bag(&req_bag, nulls & 2 != 0)];
    let request = ResflowRequest {
        struct_size: if nulls & 4 != 0 { 8 } else { size_of::<ResflowRequest>() },
        candidates: n,
        ids: array(&ids, nulls & 8 != 0),
        ids_len: ids.len(),
        bags: bags.as_ptr(),
        bags_len: b.len(1).min(1),
        dense: array(&dense, nulls & 16 != 0),
        dense_len: dense.len(),
        dense_stride: stride,
        request_ids: request_ids.as_ptr(),
        request_ids_len: request_ids.len(),
        request_bags: request_bags.as_ptr(),
        request_bags_len: b.len(1).min(1),
    };
    let (mut probs, mut fused) = (vec![0.0f32; 2 * n], vec![0.0f32; n]);
    let probs_len = b.len(2 * n).min(probs.len());
    let fused_len = b.len(n).min(fused.len());
    let mut ws = std::ptr::null_mut();
    // SAFETY: `model` is live; `ws` is writable.
    let st = unsafe { resflow_workspace_new(model, 8, &mut ws) };
    assert_eq!(st, ResflowStatus::Ok);
    // SAFETY: every pointer is null or valid for the length it is given; outputs disjoint.
    let st = unsafe {
        resflow_score(
            model,
            ws,
            &request,
            probs.as_mut_ptr(),
            probs_len,
            fused.as_mut_ptr(),
            fused_len,
        )
    };
    assert_ne!(st, ResflowStatus::Internal);
    if st == ResflowStatus::Ok {
        assert!(probs[..2 * n].iter().all(|p| (0.0..=1.0).contains(p)));
    }
    // SAFETY: made above, freed once.
    unsafe { resflow_workspace_free(ws) };
});
