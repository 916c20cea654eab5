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

/// Which clock a round is measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// Elapsed real time.
    #[default]
    Wall,
    /// CPU time of the calling thread: leaves out the time other processes held the core,
    /// so on a shared machine it is closer to what an idle core would show (caches are
    /// still shared). Only for single-threaded work on the calling thread. Falls back to
    /// the wall clock where the platform has no thread clock.
    Thread,
}

impl Clock {
    /// Seconds on this clock since some fixed start.
    pub fn now(self) -> f64 {
        match self {
            Clock::Wall => wall_seconds(),
            Clock::Thread => thread_seconds().unwrap_or_else(wall_seconds),
        }
    }
}

fn wall_seconds() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

#[cfg(unix)]
fn thread_seconds() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

#[cfg(not(unix))]
fn thread_seconds() -> Option<f64> {
    None
}

/// Times every closure of `sides` in turn, round by round, like [`time_best_and_median`]
/// for any number of sides and on the given clock: one [`Timing`] per side, in order.
pub fn time_interleaved(
    rounds: usize,
    min_round: Duration,
    clock: Clock,
    sides: &mut [&mut dyn FnMut()],
) -> Vec<Timing> {
    let reps: Vec<usize> = sides.iter_mut().map(|f| calibrate(f, min_round)).collect();
    let mut times = vec![Vec::with_capacity(rounds); sides.len()];
    for _ in 0..rounds.max(1) {
        for ((f, &r), t) in sides.iter_mut().zip(&reps).zip(&mut times) {
            let start = clock.now();
            for _ in 0..r {
                f();
            }
            t.push((clock.now() - start) / r as f64);
        }
    }
    times.into_iter().map(summarise).collect()
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
