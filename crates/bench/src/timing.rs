//! Interleaved timing: how many repetitions make a measurement, and best/median of rounds.

use std::time::{Duration, Instant};

/// Seconds per call of one side of a comparison, over all rounds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The fastest round (least disturbed by other processes).
    pub best: f64,
    /// The median round.
    pub median: f64,
}

/// Times `a` and `b` alternately for `rounds` rounds, each round long enough (at least
/// `min_round`) to swamp timer resolution, and returns the seconds per call of each.
pub fn time_best_and_median(
    rounds: usize,
    min_round: Duration,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (Timing, Timing) {
    // Warm-up: caches, page faults, scratch growth; also calibrates the repetitions.
    let reps_a = calibrate(&mut a, min_round);
    let reps_b = calibrate(&mut b, min_round);
    let (mut ta, mut tb) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds.max(1) {
        ta.push(run(&mut a, reps_a));
        tb.push(run(&mut b, reps_b));
    }
    (summarise(ta), summarise(tb))
}

fn calibrate(f: &mut impl FnMut(), min_round: Duration) -> usize {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(50));
    (min_round.as_secs_f64() / once.as_secs_f64())
        .ceil()
        .clamp(1.0, 1e7) as usize
}

fn run(f: &mut impl FnMut(), reps: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() / reps as f64
}

fn summarise(mut t: Vec<f64>) -> Timing {
    t.sort_by(f64::total_cmp);
    Timing {
        best: t[0],
        median: t[t.len() / 2],
    }
}
