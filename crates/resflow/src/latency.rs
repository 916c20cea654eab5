//! Scoring latency, as a service sees it and as the training engine does: timings of one
//! request through the [`Scorer`], and of the inference forward pass on the autodiff tape.
//! One thread, a few warm-up calls first; the latencies come back sorted, in seconds, for
//! [`percentile`].

use std::time::Instant;

use autodiff::Tape;
use shards::Batch;

use crate::network::{Forward, Mode, Network, Scratch};
use crate::{Error, ModelError, RequestBuffers, Scorer};

/// Warm-up calls before the timed ones.
const WARM_UP: usize = 3;

/// The `q` quantile (0 to 1) of `sorted`, the nearest rank.
///
/// # Panics
/// If `sorted` is empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Times `calls` requests of `n` random candidates (after 3 warm-up calls) on one thread;
/// returns the latencies in seconds, sorted.
pub fn latencies(
    scorer: &Scorer,
    n: usize,
    calls: usize,
    seed: u64,
) -> Result<Vec<f64>, ModelError> {
    // A handful of different requests, cycled, so caches see varied ids (built by the
    // library's request builder: see `RequestBuffers::random` for their distribution).
    let data: Vec<RequestBuffers> = (0..8u64)
        .map(|i| RequestBuffers::random(scorer, n, seed.wrapping_mul(8).wrapping_add(i)))
        .collect();
    let tasks = scorer.tasks();
    let (mut probs, mut fused) = (vec![0.0f32; n * tasks], vec![0.0f32; n]);
    let mut ws = scorer.workspace(n);
    let mut out = Vec::with_capacity(calls);
    for i in 0..calls + WARM_UP {
        let t = data[i % data.len()].with_request(|req| {
            let start = Instant::now();
            scorer
                .score(&mut ws, req, &mut probs, &mut fused)
                .map(|()| start.elapsed().as_secs_f64())
        })?;
        if i >= WARM_UP {
            out.push(t);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// Times the inference forward pass of `network` recorded on the autodiff tape (embedding
/// lookups, the model, the logits) over `batch`, on one thread, `calls` times after 3
/// warm-up calls; returns the latencies in seconds, sorted. Every model kind runs on the
/// same engine here, whatever its serving path, so this compares the models' own cost.
pub fn tape_forward_latencies(
    network: &Network,
    store: &autodiff::ParamStore,
    batch: &Batch,
    calls: usize,
) -> Result<Vec<f64>, Error> {
    let (mut tape, mut scratch, mut out) = (Tape::new(), Scratch::default(), Forward::default());
    let view = batch.view();
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls + WARM_UP {
        let start = Instant::now();
        tape.reset();
        network.forward(
            &mut tape,
            store,
            &view,
            Mode::Eval,
            1.0,
            false,
            &mut scratch,
            &mut out,
        )?;
        let t = start.elapsed().as_secs_f64();
        if i >= WARM_UP {
            times.push(t);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.99), 5.0);
        assert_eq!(percentile(&[7.0], 0.5), 7.0);
    }
}
