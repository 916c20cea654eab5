//! A request that owns its buffers: what a caller fills, candidate by candidate, before
//! handing the scorer a borrowed [`Request`]. Cleared and refilled, it reuses its memory.
//!
//! ```text
//! RequestBuffers::new(&scorer)           one bag per multi-valued field of each group
//!   .set_request(ids, bags)              the request-level fields, once
//!   .push_candidate(ids, bags, dense)    per candidate: single ids, bag ids, dense features
//!   .with_request(|req| scorer.score(ws, req, ..))
//! ```
//!
//! Fields come in the scorer's group order ([`Scorer::request_fields`],
//! [`Scorer::candidate_fields`]: single-valued fields first, then bags).

use crate::error::ModelError;
use crate::rng::SplitMix64;
use crate::scorer::{Bag, Request, Scorer, Workspace};

/// One multi-valued field's ids over a request's rows: row `r` owns
/// `ids[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BagBuffer {
    /// `rows + 1` offsets, starting at 0.
    pub offsets: Vec<u64>,
    /// Every row's ids.
    pub ids: Vec<u32>,
}

impl BagBuffer {
    fn clear(&mut self) {
        self.offsets.clear();
        self.offsets.push(0);
        self.ids.clear();
    }

    fn push(&mut self, ids: &[u32]) {
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len() as u64);
    }

    fn view(&self) -> Bag<'_> {
        Bag {
            offsets: &self.offsets,
            ids: &self.ids,
        }
    }
}

/// A request's owned buffers, in the scorer's field groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestBuffers {
    /// Candidates so far.
    pub candidates: usize,
    /// Single-valued candidate fields, `candidates x S_c`, row-major.
    pub ids: Vec<u32>,
    /// One bag per multi-valued candidate field.
    pub bags: Vec<BagBuffer>,
    /// Dense features: candidate `r` at `dense[r * dense_stride..][..D]`.
    pub dense: Vec<f32>,
    /// Distance between consecutive candidates' dense features.
    pub dense_stride: usize,
    /// Single-valued request fields, one id each.
    pub request_ids: Vec<u32>,
    /// One bag per multi-valued request field (one row).
    pub request_bags: Vec<BagBuffer>,
}

/// `(single-valued, multi-valued)` field counts of a group of names.
fn counts(scorer: &Scorer, names: &[&str]) -> (usize, usize) {
    let layout = &scorer.model().layout;
    let bags = names
        .iter()
        .filter(|n| {
            layout
                .field_index(n)
                .is_some_and(|i| layout.fields[i].bag.is_some())
        })
        .count();
    (names.len() - bags, bags)
}

impl RequestBuffers {
    /// Empty buffers shaped for `scorer`'s field groups (dense stride = the dense count).
    pub fn new(scorer: &Scorer) -> Self {
        let (_, cand_bags) = counts(scorer, &scorer.candidate_fields());
        let (_, req_bags) = counts(scorer, &scorer.request_fields());
        let mut r = Self {
            bags: vec![BagBuffer::default(); cand_bags],
            request_bags: vec![BagBuffer::default(); req_bags],
            dense_stride: scorer.model().layout.dense,
            ..Self::default()
        };
        r.clear();
        r
    }

    /// No candidate and no request-level value; the memory stays.
    pub fn clear(&mut self) {
        self.candidates = 0;
        self.ids.clear();
        self.dense.clear();
        self.request_ids.clear();
        self.bags.iter_mut().for_each(BagBuffer::clear);
        for b in &mut self.request_bags {
            b.clear();
        }
    }

    /// Sets the request-level fields: one id per single-valued field, one id list per bag.
    /// Lengths are checked when the request is scored.
    pub fn set_request(&mut self, ids: &[u32], bags: &[&[u32]]) {
        self.request_ids.clear();
        self.request_ids.extend_from_slice(ids);
        for (b, ids) in self.request_bags.iter_mut().zip(bags) {
            b.clear();
            b.push(ids);
        }
    }

    /// Appends a candidate: one id per single-valued candidate field, one id list per
    /// candidate bag, and its dense features (then padded to the dense stride).
    pub fn push_candidate(&mut self, ids: &[u32], bags: &[&[u32]], dense: &[f32]) {
        self.ids.extend_from_slice(ids);
        for (b, ids) in self.bags.iter_mut().zip(bags) {
            b.push(ids);
        }
        let start = self.dense.len();
        self.dense.extend_from_slice(dense);
        self.dense
            .resize(start + self.dense_stride.max(dense.len()), 0.0);
        self.candidates += 1;
    }

    /// Calls `f` with the borrowed [`Request`] (the bag views are collected first, so a
    /// timed `f` times the scorer alone).
    pub fn with_request<R>(&self, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let bags: Vec<Bag<'_>> = self.bags.iter().map(BagBuffer::view).collect();
        let request_bags: Vec<Bag<'_>> = self.request_bags.iter().map(BagBuffer::view).collect();
        f(&Request {
            candidates: self.candidates,
            ids: &self.ids,
            bags: &bags,
            dense: &self.dense,
            dense_stride: self.dense_stride,
            request_ids: &self.request_ids,
            request_bags: &request_bags,
        })
    }

    /// Scores the request into `probs` (`N x T`) and `fused` (`N`).
    pub fn score(
        &self,
        scorer: &Scorer,
        ws: &mut Workspace,
        probs: &mut [f32],
        fused: &mut [f32],
    ) -> Result<(), ModelError> {
        self.with_request(|req| scorer.score(ws, req, probs, fused))
    }

    /// A random request of `n` candidates for `scorer`, seeded: ids uniform over each
    /// field's vocabulary, 1 to 3 ids per request bag, 0 to 3 per candidate bag, dense
    /// features uniform in `[-1, 1)` with a stride of `D + 3` (so that a stride is
    /// exercised). The C ABI's tests generate the same request in C++ from the same seed
    /// (`crates/capi/tests/`), so the draws' order is part of its contract.
    pub fn random(scorer: &Scorer, n: usize, seed: u64) -> Self {
        let layout = &scorer.model().layout;
        let field = |name: &str| &layout.fields[layout.field_index(name).expect("a field")];
        let vocabs = |names: Vec<&str>, bag: bool| -> Vec<u64> {
            names
                .into_iter()
                .filter(|n| field(n).bag.is_some() == bag)
                .map(|n| field(n).vocab as u64)
                .collect()
        };
        let (req_single, req_bags) = (
            vocabs(scorer.request_fields(), false),
            vocabs(scorer.request_fields(), true),
        );
        let (cand_single, cand_bags) = (
            vocabs(scorer.candidate_fields(), false),
            vocabs(scorer.candidate_fields(), true),
        );
        let mut rng = SplitMix64::new(seed);
        let mut r = Self::new(scorer);
        r.request_ids = req_single
            .iter()
            .map(|&v| (rng.next_u64() % v) as u32)
            .collect();
        for (b, &v) in r.request_bags.iter_mut().zip(&req_bags) {
            let len = 1 + rng.next_u64() % 3;
            let ids: Vec<u32> = (0..len).map(|_| (rng.next_u64() % v) as u32).collect();
            b.clear();
            b.push(&ids);
        }
        for _ in 0..n {
            for &v in &cand_single {
                r.ids.push((rng.next_u64() % v) as u32);
            }
        }
        for (b, &v) in r.bags.iter_mut().zip(&cand_bags) {
            for _ in 0..n {
                let len = rng.next_u64() % 4;
                let ids: Vec<u32> = (0..len).map(|_| (rng.next_u64() % v) as u32).collect();
                b.push(&ids);
            }
        }
        let d = layout.dense;
        r.dense_stride = d + 3;
        r.dense = vec![0.0f32; n * r.dense_stride];
        for row in 0..n {
            for j in 0..d {
                r.dense[row * r.dense_stride + j] =
                    ((rng.next_u64() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32;
            }
        }
        r.candidates = n;
        r
    }
}
