//! `resflow bench score`: latency of scoring one request with the [`Scorer`], one thread,
//! on the Ali-CCP layout of the paper's released code.
//!
//! The model has 19 categorical fields (17 single-valued, 2 bags), 32-wide embeddings and
//! two towers of 128-64-1 with PReLU and BatchNorm: the paper's setting. The 10 user and
//! context fields (101, 121-129 and the scenario field 301) are request-level: given once
//! per request, their share of the first layer computed once. Weights are random (latency
//! does not depend on their values); tables are the layout's hash sizes capped at
//! `max_vocab` rows so the benchmark fits in memory, ids are uniform over each table.

use resflow::config::TaskConfig;
use resflow::{
    Field, InputLayout, Model, ModelConfig, ModelError, Pooling, Precision, RequestBuffers, Scorer,
};

use crate::timing::Clock;
use serde::Serialize;
use shards::synth::{ALICCP_MULTI, ALICCP_SINGLE};

/// Fields constant within a request: the user (101), the user profile (121-129) and the
/// scenario (301).
pub const ALICCP_REQUEST_FIELDS: [&str; 10] = [
    "101", "121", "122", "124", "125", "126", "127", "128", "129", "301",
];

/// The Ali-CCP input layout with each table capped at `max_vocab` rows.
pub fn aliccp_layout(max_vocab: u32) -> InputLayout {
    InputLayout {
        fields: ALICCP_SINGLE
            .iter()
            .map(|&(name, vocab)| (name, vocab, None))
            .chain(
                ALICCP_MULTI
                    .iter()
                    .map(|&(name, vocab)| (name, vocab, Some(Pooling::Sum))),
            )
            .map(|(name, vocab, bag)| Field {
                name: name.to_string(),
                vocab: vocab.min(max_vocab),
                bag,
            })
            .collect(),
        dense: 0,
        tasks: vec!["click".into(), "conversion".into()],
    }
}

/// Latency figures for one request size in one precision.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreResult {
    /// Candidates per request.
    pub candidates: usize,
    /// The arithmetic of the plan's GEMMs (`f32` or `int8`).
    pub precision: &'static str,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Median latency with every field given per candidate (no request-level split).
    pub p50_no_split_ms: f64,
    /// 99th percentile latency with every field given per candidate.
    pub p99_no_split_ms: f64,
    /// Candidates scored per second at the median.
    pub candidates_per_s: f64,
    /// Against the f32 scorer on the same requests (none for f32 itself).
    pub deviation: Option<Deviation>,
}

/// How far one precision's probabilities are from the f32 scorer's on the same requests.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Deviation {
    /// Largest absolute difference of a probability.
    pub max_abs: f64,
    /// Mean absolute difference.
    pub mean_abs: f64,
    /// Probabilities compared (requests x candidates x tasks, both layouts).
    pub compared: usize,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    /// Kernel tier of the GEMMs.
    pub kernel: &'static str,
    /// The clock of every latency: `wall` or `thread`.
    pub clock: &'static str,
    /// Largest embedding table (rows).
    pub max_vocab: u32,
    /// One entry per request size.
    pub requests: Vec<ScoreResult>,
}

// The timings live in the library, beside the comparison that also uses them.
pub use resflow::latency::{latencies, percentile, tape_forward_latencies};

/// [`latencies`] on the given clock: [`Clock::Thread`] leaves out the time other processes
/// held the core, which makes figures taken on a shared machine closer to an idle one's
/// (the same requests, warm-up and order as [`latencies`]).
pub fn latencies_on(
    scorer: &Scorer,
    n: usize,
    calls: usize,
    seed: u64,
    clock: Clock,
) -> Result<Vec<f64>, ModelError> {
    if clock == Clock::Wall {
        return latencies(scorer, n, calls, seed);
    }
    let data: Vec<RequestBuffers> = (0..8u64)
        .map(|i| RequestBuffers::random(scorer, n, seed.wrapping_mul(8).wrapping_add(i)))
        .collect();
    let tasks = scorer.tasks();
    let (mut probs, mut fused) = (vec![0.0f32; n * tasks], vec![0.0f32; n]);
    let mut ws = scorer.workspace(n);
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls + 3 {
        let t = data[i % data.len()].with_request(|req| {
            let start = clock.now();
            scorer
                .score(&mut ws, req, &mut probs, &mut fused)
                .map(|()| clock.now() - start)
        })?;
        if i >= 3 {
            out.push(t);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The benchmark's model: random weights on the capped Ali-CCP layout, with or without the
/// request-level split.
pub fn model(max_vocab: u32, split: bool) -> Result<Model, ModelError> {
    let config = ModelConfig {
        tasks: ["click", "conversion"]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        request_fields: if split {
            ALICCP_REQUEST_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            vec![]
        },
        ..ModelConfig::default()
    };
    Model::random(config, aliccp_layout(max_vocab), 1)
}

/// Probabilities of `scorer` on the benchmark's requests of `n` candidates (seed `seed`).
fn probabilities(scorer: &Scorer, n: usize, seed: u64) -> Result<Vec<f32>, ModelError> {
    let tasks = scorer.tasks();
    let mut ws = scorer.workspace(n);
    let mut all = Vec::new();
    for i in 0..8u64 {
        let data = RequestBuffers::random(scorer, n, seed.wrapping_mul(8).wrapping_add(i));
        let (mut probs, mut fused) = (vec![0.0f32; n * tasks], vec![0.0f32; n]);
        data.with_request(|req| scorer.score(&mut ws, req, &mut probs, &mut fused))?;
        all.extend_from_slice(&probs);
    }
    Ok(all)
}

/// [`Deviation`] of `scorer` from `reference` on the benchmark's requests.
fn deviation(pairs: &[(&Scorer, &Scorer)], n: usize, seed: u64) -> Result<Deviation, ModelError> {
    let (mut max_abs, mut sum, mut compared) = (0.0f64, 0.0f64, 0usize);
    for (scorer, reference) in pairs {
        let (a, b) = (
            probabilities(scorer, n, seed)?,
            probabilities(reference, n, seed)?,
        );
        for (p, q) in a.iter().zip(&b) {
            let d = f64::from((p - q).abs());
            max_abs = max_abs.max(d);
            sum += d;
        }
        compared += a.len();
    }
    Ok(Deviation {
        max_abs,
        mean_abs: sum / compared.max(1) as f64,
        compared,
    })
}

/// Runs the benchmark for each request size and each of `precisions` (in turn for each
/// size, so their figures are taken side by side), each against the f32 scorer's
/// probabilities on the same requests.
pub fn run(
    sizes: &[usize],
    precisions: &[Precision],
    max_vocab: u32,
    calls: usize,
    clock: Clock,
) -> Result<ScoreReport, ModelError> {
    let (split_model, whole_model) = (model(max_vocab, true)?, model(max_vocab, false)?);
    let build = |p: Precision| -> Result<(Scorer, Scorer), ModelError> {
        Ok((
            Scorer::with_precision(split_model.clone(), p)?,
            Scorer::with_precision(whole_model.clone(), p)?,
        ))
    };
    // The f32 scorers the other precisions are compared with (built only for those).
    let reference = precisions
        .iter()
        .any(|&p| p != Precision::F32)
        .then(|| build(Precision::F32))
        .transpose()?;
    let scorers = precisions
        .iter()
        .map(|&p| build(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut requests = Vec::new();
    for &n in sizes {
        // Fewer calls for large requests keep the run short.
        let calls = (calls * 100 / n.max(100)).max(50);
        for (&precision, (split, whole)) in precisions.iter().zip(&scorers) {
            let with = latencies_on(split, n, calls, n as u64, clock)?;
            let without = latencies_on(whole, n, calls / 2 + 1, n as u64, clock)?;
            let p50 = percentile(&with, 0.5);
            let deviation = match &reference {
                Some((s, w)) if precision != Precision::F32 => {
                    Some(deviation(&[(split, s), (whole, w)], n, n as u64)?)
                }
                _ => None,
            };
            requests.push(ScoreResult {
                candidates: n,
                precision: precision.name(),
                p50_ms: p50 * 1e3,
                p99_ms: percentile(&with, 0.99) * 1e3,
                p50_no_split_ms: percentile(&without, 0.5) * 1e3,
                p99_no_split_ms: percentile(&without, 0.99) * 1e3,
                candidates_per_s: n as f64 / p50,
                deviation,
            });
        }
    }
    Ok(ScoreReport {
        kernel: tensor::Tier::active().name(),
        clock: match clock {
            Clock::Wall => "wall",
            Clock::Thread => "thread",
        },
        max_vocab,
        requests,
    })
}
