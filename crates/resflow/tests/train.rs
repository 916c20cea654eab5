//! End to end on a small synthetic funnel: the model learns, its loss falls, runs are
//! reproducible bit for bit, a resumed run equals an uninterrupted one, and the exported
//! model scores what the trainer predicts.

mod common;

use std::path::Path;

use common::{data, serving_gap, temp};

use resflow::{ModelConfig, ModelError, Scorer, Trainer};
use shards::Dataset;
use shards::synth::{SynthConfig, generate};

/// Scorer vs the trainer's evaluation pass: the same arithmetic in a different order
/// (BatchNorm folded into the weights, request-level split).
const SERVE_TOLERANCE: f32 = tensor::tolerance::APPROXIMATE;

fn config() -> ModelConfig {
    let mut c =
        ModelConfig::from_json(r#"{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 512}"#)
            .unwrap();
    c.optimizer.learning_rate = 3e-3;
    c
}

fn trainer(ds: &Dataset, config: ModelConfig, threads: usize) -> Trainer {
    Trainer::new(config, resflow::layout_of(ds.schema()), threads).unwrap()
}

fn params_bits(t: &Trainer) -> Vec<u32> {
    let p = &t.store;
    p.dense
        .iter()
        .flat_map(|d| d.value.to_vec())
        .chain(p.tables.iter().flat_map(|t| t.value.to_vec()))
        .map(f32::to_bits)
        .collect()
}

#[test]
fn learns_reproducibly_resumes_and_serves() {
    let (train_dir, train) = data("train", 40_000, 1);
    let (eval_dir, eval) = data("eval", 12_000, 2);

    // Learns: AUC well above 0.5 on both tasks, loss falls.
    let mut t = trainer(&train, config(), 2);
    let mut losses = vec![];
    t.fit(&train, 3, |_, s| {
        losses.push(s.losses[0] + s.losses[1]);
        Ok(())
    })
    .unwrap();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.9 * first, "loss should fall: {first} -> {last}");
    let report = t.evaluate(&eval, &t.eval_config()).unwrap();
    for task in &report.tasks {
        assert!(
            task.auc.unwrap() > 0.62,
            "{}: AUC {:?}",
            task.name,
            task.auc
        );
    }
    assert!(report.wr_at_k.is_some());

    // Two runs with the same seed and thread count: identical parameters.
    let mut a = trainer(&train, config(), 2);
    let mut b = trainer(&train, config(), 2);
    a.fit(&train, 1, |_, _| Ok(())).unwrap();
    b.fit(&train, 1, |_, _| Ok(())).unwrap();
    assert!(params_bits(&a) == params_bits(&b), "two-thread runs differ");

    // Killed after 5 steps of epoch 2 (checkpoint saved at step 5), resumed: same result.
    let ckpt = temp("ckpt");
    let mut full = trainer(&train, config(), 2);
    full.fit(&train, 2, |_, _| Ok(())).unwrap();
    let mut killed = trainer(&train, config(), 2);
    killed.fit(&train, 1, |_, _| Ok(())).unwrap();
    let stop = killed.fit(&train, 2, |tr, _| {
        if tr.batch_in_epoch == 5 {
            tr.save_checkpoint(&ckpt)?;
            return Err(ModelError::Request("killed".into()).into());
        }
        Ok(())
    });
    assert!(stop.is_err());
    let mut resumed = Trainer::load_checkpoint(&ckpt, 2).unwrap();
    assert_eq!((resumed.epoch, resumed.batch_in_epoch), (1, 5));
    resumed.fit(&train, 2, |_, _| Ok(())).unwrap();
    assert!(
        params_bits(&resumed) == params_bits(&full),
        "the resumed run differs from the uninterrupted one"
    );

    // Export, save, load, score: the scorer matches the trainer's evaluation pass.
    let model_path = ckpt.join("model.safetensors");
    t.export().unwrap().save(&model_path).unwrap();
    let scorer = Scorer::new(resflow::Model::load(&model_path).unwrap()).unwrap();
    let worst = serving_gap(&mut t, &scorer, &eval);
    assert!(worst <= SERVE_TOLERANCE, "scorer vs trainer: {worst}");

    for d in [train_dir, eval_dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn batch_norm_mode_three_tasks_and_request_fields() {
    let dir = temp("three");
    generate(
        &SynthConfig {
            rows: 12_000,
            tasks: 3,
            max_vocab: 300,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    let ds = Dataset::open(&dir).unwrap();
    let mut c = ModelConfig::from_json(
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256, "batch_norm": "batch",
            "tasks": [{"name": "click", "pos_weight": 10}, {"name": "cart", "pos_weight": 30}, {"name": "order", "pos_weight": 60}],
            "request_fields": ["101", "121", "301"]}"#,
    )
    .unwrap();
    c.optimizer.learning_rate = 3e-3;
    let mut t = trainer(&ds, c, 2);
    t.fit(&ds, 1, |_, _| Ok(())).unwrap();
    // Running statistics moved away from 0 / 1.
    let p = t.params();
    let mean = p.tensor("input_bn/running_mean").unwrap();
    assert!(mean.as_slice().iter().any(|m| m.abs() > 1e-4));
    let scorer = Scorer::new(t.export().unwrap()).unwrap();
    let worst = serving_gap(&mut t, &scorer, &ds);
    assert!(worst <= SERVE_TOLERANCE, "scorer vs trainer: {worst}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatched_data_and_bad_checkpoints_are_clear_errors() {
    let (dir, ds) = data("mismatch", 2_000, 3);
    let three = temp("mismatch3");
    generate(
        &SynthConfig {
            rows: 2_000,
            tasks: 3,
            max_vocab: 400,
            ..SynthConfig::default()
        },
        &three,
    )
    .unwrap();
    let ds3 = Dataset::open(&three).unwrap();
    let mut t = trainer(&ds, config(), 1);
    let e = t.fit(&ds3, 1, |_, _| Ok(())).unwrap_err().to_string();
    assert!(e.contains("tasks"), "{e}");
    let e = Trainer::load_checkpoint(Path::new("/nonexistent/ckpt"), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/ckpt"), "{e}");
    let junk = temp("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join(resflow::CHECKPOINT_FILE), b"not a checkpoint").unwrap();
    assert!(
        Trainer::load_checkpoint(&junk, 1)
            .unwrap_err()
            .to_string()
            .contains("not a checkpoint")
    );
    for d in [dir, three, junk] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn batch_norm_running_statistics_combine_exactly_across_workers() {
    // In batch mode each worker normalises with its own slice's statistics, but the running
    // averages come from the exact statistics of the whole batch: one step with 2 workers
    // must move them as one step with 1 worker does (up to rounding).
    let dir = temp("bnstats");
    generate(
        &SynthConfig {
            rows: 512,
            max_vocab: 200,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    let ds = Dataset::open(&dir).unwrap();
    let mut c = config();
    c.batch_norm = resflow::config::BatchNormMode::Batch;
    c.batch_size = 512;
    let mut batch = ds.new_batch();
    assert!(ds.batches(512, Some(1)).next_into(&mut batch));
    let stats = |threads| {
        let mut t = trainer(&ds, c.clone(), threads);
        t.train_step(&batch).unwrap();
        let p = t.params();
        let mut v = p.tensor("input_bn/running_mean").unwrap().to_vec();
        v.extend(p.tensor("input_bn/running_var").unwrap().as_slice());
        v
    };
    let (one, two) = (stats(1), stats(2));
    let worst = testkit::max_abs_diff(&one, &two);
    assert!(
        worst <= tensor::tolerance::CLOSE,
        "running statistics differ by {worst}"
    );
    // And they moved: momentum 0.99 from mean 0 / variance 1 towards the batch's.
    assert!(one.iter().take(one.len() / 2).any(|m| m.abs() > 1e-5));
    std::fs::remove_dir_all(&dir).unwrap();
}
