//! After warm-up, a training step allocates nothing: `Trainer` steps with 2 workers on the
//! synthetic funnel (embeddings, bags, the towers with residual links, weighted BCE, Adam
//! and lazy Adam, the reduction of the workers' gradients), counted by a global allocator
//! across every thread. Checked for both BatchNorm modes (`batch` adds the running
//! statistics' update) and both table optimisers.

mod common;

use resflow::config::BatchNormMode;
use resflow::{ModelConfig, Trainer};

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

/// Steps before counting: the first step sizes every buffer and gives the lists whose
/// length varies with the bags twice the room it used (`reserve_headroom`).
const WARM_UP: usize = 1;

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
        let mut trainer = Trainer::new(config, resflow::layout_of(data.schema()), 2).unwrap();
        assert_eq!(trainer.threads(), 2);
        // Allocations made by each step (the batch is fetched outside the count: the
        // shuffled iterator is the data crate's, and a step only reads the batch). The
        // steps run on the trainer's pool, as those of `train_epoch` do.
        let mut counts = Vec::with_capacity(64);
        let mut batches = data.batches(256, Some(7));
        let mut batch = data.new_batch();
        let mut stats = resflow::StepStats::default();
        trainer.on_pool(|t| {
            while batches.next_into(&mut batch) {
                let before = testkit::allocations();
                t.train_step_into(&batch, &mut stats).unwrap();
                counts.push(testkit::allocations() - before);
            }
        });
        assert_eq!(counts.len(), 40);
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
    let _ = std::fs::remove_dir_all(dir);
}
