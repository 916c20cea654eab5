//! Fuzz target: `resflow_score` with arguments shaped by the input. The request is built
//! as every caller builds one, with the library's request builder (`RequestBuffers`:
//! candidate counts, ids that may be out of range, bags of any length, any dense bits, NaN
//! included), then bent by the input: lengths that no longer add up, offsets out of order,
//! any stride, null arrays, a short struct, short outputs. Every pointer is valid for the
//! length it is given (the C contract); everything else is fair game. The call must return
//! a status, never crash, and never report an internal error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use resflow::config::TaskConfig;
use resflow::{BagBuffer, Field, InputLayout, Model, ModelConfig, Pooling, RequestBuffers, Scorer};
use resflow_capi::*;

/// The model: its handle's address (the handle lives for the whole process) and the same
/// model's scorer, which shapes the request builder.
fn model() -> &'static (usize, Scorer) {
    static MODEL: OnceLock<(usize, Scorer)> = OnceLock::new();
    MODEL.get_or_init(|| {
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
                .map(|n| TaskConfig::unweighted(*n))
                .collect(),
            request_fields: vec!["user".into(), "user_tags".into()],
            ..ModelConfig::default()
        };
        let model = Model::random(config, layout, 1).unwrap();
        let bytes = model.to_bytes().unwrap();
        let mut m = std::ptr::null_mut();
        // SAFETY: `bytes` is live for its length; `m` is writable.
        let st = unsafe {
            resflow_model_from_bytes(RESFLOW_ABI_VERSION, bytes.as_ptr(), bytes.len(), &mut m)
        };
        assert_eq!(st, ResflowStatus::Ok);
        (m as usize, Scorer::new(model).unwrap())
    })
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
    fn f32(&mut self) -> f32 {
        f32::from_bits(if self.u8() % 4 == 0 { self.u32() } else { 0x3f00_0000 })
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

/// `v` resized to a length near its own (see [`Bytes::len`]), new entries `fill`.
fn bend<T: Clone>(v: &mut Vec<T>, b: &mut Bytes, fill: T) {
    let len = b.len(v.len());
    v.resize(len, fill);
}

/// A bag bent: its offsets' count off by a little, sometimes one offset anywhere (out of
/// order, past the ids), its ids' count off by a little.
fn bend_bag(bag: &mut BagBuffer, b: &mut Bytes) {
    let last = bag.offsets.last().copied().unwrap_or(0);
    bend(&mut bag.offsets, b, last);
    if b.u8() % 4 == 0 && !bag.offsets.is_empty() {
        let k = b.u8() as usize % bag.offsets.len();
        bag.offsets[k] = u64::from(b.u8() % 8);
    }
    bend(&mut bag.ids, b, 0);
}

fuzz_target!(|data: &[u8]| {
    let (handle, scorer) = model();
    let model = *handle as *const ResflowModel;
    let mut b = Bytes(data);
    let n = (b.u8() % 12) as usize;
    let nulls = b.u8();
    // The request as a caller builds it: "user" and "user_tags" once, then per candidate
    // "item", "item_tags" and two dense features. Ids may exceed the vocabularies (20 items,
    // 10 users, 8 and 6 tags).
    let mut req = RequestBuffers::new(scorer);
    let user_tags: Vec<u32> = (0..b.u8() % 4).map(|_| b.u32() % 10).collect();
    req.set_request(&[b.u32() % 12], &[&user_tags]);
    for _ in 0..n {
        let item = b.u32() % 24;
        let tags: Vec<u32> = (0..b.u8() % 4).map(|_| b.u32() % 10).collect();
        req.push_candidate(&[item], &[&tags], &[b.f32(), b.f32()]);
    }
    // Then bent by the input.
    bend(&mut req.ids, &mut b, 0);
    for bag in req.bags.iter_mut().chain(&mut req.request_bags) {
        bend_bag(bag, &mut b);
    }
    bend(&mut req.dense, &mut b, 0.5);
    bend(&mut req.request_ids, &mut b, 0);
    let stride = match b.u8() % 4 {
        0 => usize::MAX / 3,
        1 => b.u8() as usize,
        _ => req.dense_stride,
    };
    let bag = |bag: &BagBuffer, null: bool| ResflowBag {
        offsets: array(&bag.offsets, null),
        offsets_len: bag.offsets.len(),
        ids: bag.ids.as_ptr(),
        ids_len: bag.ids.len(),
    };
    let bags = [bag(&req.bags[0], nulls & 1 != 0)];
    let request_bags = [bag(&req.request_bags[0], nulls & 2 != 0)];
    let request = ResflowRequest {
        struct_size: if nulls & 4 != 0 { 8 } else { size_of::<ResflowRequest>() },
        candidates: req.candidates,
        ids: array(&req.ids, nulls & 8 != 0),
        ids_len: req.ids.len(),
        bags: bags.as_ptr(),
        bags_len: b.len(1).min(1),
        dense: array(&req.dense, nulls & 16 != 0),
        dense_len: req.dense.len(),
        dense_stride: stride,
        request_ids: req.request_ids.as_ptr(),
        request_ids_len: req.request_ids.len(),
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
