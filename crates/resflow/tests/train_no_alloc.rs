//! After warm-up, a training step allocates nothing: `Trainer` steps with 2 workers on the
//! synthetic funnel (embeddings, bags, the towers with residual links, weighted BCE, Adam
//! and lazy Adam, the reduction of the workers' gradients), counted by a global allocator
//! across every thread. Checked for both BatchNorm modes (`batch` adds the running
//! statistics' update) and both table optimisers. On Linux it also faults no page: the
//! process's minor page faults (every thread's, from `/proc/self/stat`) do not move over
//! the steady steps, so every buffer a step writes, tables and moments included, was
//! touched before (in one of up to three fresh trainers: the kernel may fault a page back
//! in on its own, see the test).

mod common;

use resflow::config::BatchNormMode;
use resflow::{ModelConfig, Trainer};
use shards::Dataset;

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

/// Steps before counting: the first step sizes every buffer and gives the lists whose
/// length varies with the bags twice the room it used (`reserve_headroom`).
const WARM_UP: usize = 1;

/// Fresh trainers tried before a fault count over the steady steps is a failure (see
/// the test).
const ATTEMPTS: usize = 3;

/// Run as a plain program (`harness = false` in Cargo.toml), so that no harness thread
/// allocates while the counter runs.
fn main() {
    training_steps_allocate_nothing_after_warm_up();
    println!("training_steps_allocate_nothing_after_warm_up: ok");
}

fn training_steps_allocate_nothing_after_warm_up() {
    // 40 batches of 256 rows.
    let (dir, data) = common::data("no-alloc", 10_240, 3);
    for (bn, lazy) in [
        (BatchNormMode::Affine, true),
        (BatchNormMode::Batch, true),
        (BatchNormMode::Affine, false),
    ] {
        let mut config = ModelConfig {
            batch_size: 256,
            batch_norm: bn,
            ..ModelConfig::default()
        };
        config.optimizer.sparse_embeddings = lazy;
        // A fresh trainer per attempt. The kernel itself can fault a page of a running
        // process back in (one it migrated while compacting memory for other processes),
        // which no step caused; such a fault shows in one attempt and not the next, while
        // a buffer a steady step touches for the first time faults in every attempt. So
        // the steady steps must fault nothing in one of the attempts, and allocate nothing
        // in every one.
        let mut attempt_faults = Vec::new();
        let mut counts = Vec::with_capacity(64);
        for _ in 0..ATTEMPTS {
            let (c, faults) = steady_steps(&config, &data);
            counts = c;
            match faults {
                Some(f) => attempt_faults.push(f),
                None if cfg!(target_os = "linux") => panic!("/proc/self/stat unreadable"),
                None => break,
            }
            if attempt_faults.last() == Some(&0) {
                break;
            }
            check_allocations(&counts, bn, lazy);
        }
        if cfg!(target_os = "linux") {
            assert!(
                attempt_faults.contains(&0),
                "{bn:?}, lazy {lazy}: minor page faults in the {} steady steps of each of {} \
                 fresh trainers: {attempt_faults:?}",
                counts.len() - WARM_UP,
                attempt_faults.len()
            );
        }
        check_allocations(&counts, bn, lazy);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Trains 40 steps on a fresh trainer: the allocations of each step, and the process's
/// minor faults over the steps after the warm-up (`None` without `/proc/self/stat`).
fn steady_steps(config: &ModelConfig, data: &Dataset) -> (Vec<usize>, Option<u64>) {
    let mut trainer = Trainer::new(config.clone(), resflow::layout_of(data.schema()), 2).unwrap();
    assert_eq!(trainer.threads(), 2);
    // Allocations made by each step (the batch is fetched outside the count: the
    // shuffled iterator is the data crate's, and a step only reads the batch). The
    // steps run on the trainer's pool, as those of `train_epoch` do.
    let mut counts = Vec::with_capacity(64);
    let mut batches = data.batches(256, Some(7));
    let mut batch = data.new_batch();
    let mut stats = resflow::StepStats::default();
    // Minor faults before the first steady step and after the last one.
    let mut faults = (None, None);
    trainer.on_pool(|t| {
        while batches.next_into(&mut batch) {
            if counts.len() == WARM_UP {
                faults.0 = minor_faults();
            }
            let before = testkit::allocations();
            t.train_step_into(&batch, &mut stats).unwrap();
            counts.push(testkit::allocations() - before);
        }
        faults.1 = minor_faults();
    });
    assert_eq!(counts.len(), 40);
    let faults = match faults {
        (Some(start), Some(end)) => Some(end - start),
        _ => None,
    };
    (counts, faults)
}

/// The first step sizes the buffers; no step after the warm-up allocates.
fn check_allocations(counts: &[usize], bn: BatchNormMode, lazy: bool) {
    assert!(counts[0] > 0, "the first step sizes the buffers");
    let grew: Vec<_> = counts
        .iter()
        .enumerate()
        .skip(WARM_UP)
        .filter(|(_, c)| **c != 0)
        .map(|(k, &c)| (k + 1, c))
        .collect();
    assert!(
        grew.is_empty(),
        "{bn:?}, lazy {lazy}: allocations in steps (step, count) {grew:?}"
    );
}

/// The process's minor page faults so far (field 10 of `/proc/self/stat`, every thread's),
/// or `None` where there is no such file.
fn minor_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 on: state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt.
    after_name.split_whitespace().nth(7)?.parse().ok()
}
