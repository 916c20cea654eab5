//! The baselines end to end on a small synthetic funnel: each one learns (beats a constant
//! predictor on every task), its exported file scores what its trainer predicts, ESMM keeps
//! `p(ctcvr) <= p(ctr)`, a checkpoint restores it exactly, and a damaged file is a clear
//! error.

mod common;

use common::{data, predictions, served, serving_gap, temp};

use resflow::config::{BatchNormMode, ModelKind};
use resflow::{InputLayout, Model, ModelConfig, Scorer, Trainer};

/// The scorer runs the same head on a tape, with batches of another size.
const SERVE_TOLERANCE: f32 = tensor::tolerance::APPROXIMATE;

/// Small sizes for every kind, so the whole test runs in seconds.
fn config(kind: &str) -> ModelConfig {
    let mut c =
        ModelConfig::from_json(r#"{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 512}"#)
            .unwrap()
            .with_model(kind)
            .unwrap();
    c.optimizer.learning_rate = 3e-3;
    match &mut c.model {
        ModelKind::SharedBottom(s) => {
            s.bottom = vec![48];
            s.tower = vec![16];
        }
        ModelKind::Mmoe(m) => {
            m.experts = 3;
            m.expert_hidden = vec![24];
            m.tower = vec![16];
        }
        ModelKind::Ple(p) => {
            p.expert_hidden = vec![24];
            p.tower = vec![16];
        }
        _ => {}
    }
    c
}

fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    testkit::max_abs_diff(a, b)
}

#[test]
fn every_baseline_learns_and_serves_what_it_trained() {
    let (train_dir, train) = data("train", 30_000, 11);
    let (eval_dir, eval) = data("eval", 8_000, 12);
    let layout = resflow::layout_of(train.schema());
    let files = temp("files");
    std::fs::create_dir_all(&files).unwrap();
    for kind in ModelKind::NAMES {
        let mut t = Trainer::new(config(kind), layout.clone(), 2).unwrap();
        t.fit(&train, 2, |_, _| Ok(())).unwrap();
        // A constant predictor ranks nothing: AUC 0.5 on every task.
        let report = t.evaluate(&eval, &t.eval_config()).unwrap();
        for task in &report.tasks {
            let auc = task.auc.unwrap();
            assert!(auc > 0.6, "{kind} {}: AUC {auc}", task.name);
        }
        // The exported file, saved and loaded, scores what the trainer predicts.
        let path = files.join(format!("{kind}.safetensors"));
        t.export().unwrap().save(&path).unwrap();
        let model = Model::load(&path).unwrap();
        assert_eq!(model.config.model.name(), kind);
        let scorer = Scorer::new(model).unwrap();
        let (predicted, scored) = (predictions(&mut t, &eval), served(&scorer, &eval));
        let gap = max_gap(&predicted, &scored);
        assert!(gap <= SERVE_TOLERANCE, "{kind}: scorer vs trainer {gap}");
        if t.network.config.model.two_tasks_only() {
            // ESMM and the counterfactual models built on it: a product head.
            for p in predicted.chunks_exact(2).chain(scored.chunks_exact(2)) {
                assert!(p[1] <= p[0], "{kind}: p(ctcvr) {} > p(ctr) {}", p[1], p[0]);
            }
        }
    }
    for d in [train_dir, eval_dir, files] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn baselines_resume_exactly_from_a_checkpoint_in_batch_norm_mode() {
    let (dir, ds) = data("ckpt-data", 6_000, 13);
    let layout = resflow::layout_of(ds.schema());
    for kind in ["ple", "aitm"] {
        let mut c = config(kind);
        c.batch_norm = BatchNormMode::Batch;
        c.batch_size = 256;
        let mut full = Trainer::new(c.clone(), layout.clone(), 2).unwrap();
        full.fit(&ds, 2, |_, _| Ok(())).unwrap();
        let ckpt = temp(&format!("ckpt-{kind}"));
        let mut first = Trainer::new(c, layout.clone(), 2).unwrap();
        first.fit(&ds, 1, |_, _| Ok(())).unwrap();
        first.save_checkpoint(&ckpt).unwrap();
        let mut resumed = Trainer::load_checkpoint(&ckpt, 2).unwrap();
        resumed.fit(&ds, 2, |_, _| Ok(())).unwrap();
        let (a, b) = (full.params(), resumed.params());
        assert!(a == b, "{kind}: the resumed run differs");
        // Running statistics moved and travel into the served model.
        assert!(a.tensors.iter().any(
            |(n, m)| n.ends_with("running_mean") && m.as_slice().iter().any(|v| v.abs() > 1e-4)
        ));
        let scorer = Scorer::new(resumed.export().unwrap()).unwrap();
        let gap = serving_gap(&mut resumed, &scorer, &ds);
        assert!(gap <= SERVE_TOLERANCE, "{kind}: scorer vs trainer {gap}");
        std::fs::remove_dir_all(ckpt).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn damaged_baseline_files_are_clear_errors() {
    let layout = InputLayout {
        fields: vec![resflow::Field {
            name: "item".into(),
            vocab: 10,
            bag: None,
        }],
        dense: 0,
        tasks: vec!["click".into(), "conversion".into()],
    };
    let good = Model::random(config("mmoe"), layout.clone(), 1).unwrap();
    let bytes = good.to_bytes().unwrap();
    assert!(Model::from_bytes(&bytes, "good").unwrap() == good);

    let mut missing = good.clone();
    missing.tensors.retain(|(n, _)| !n.contains("gate/1"));
    let e = missing.to_bytes().unwrap_err().to_string();
    assert!(e.contains("gate/1") && e.contains("missing"), "{e}");

    let mut extra = good.clone();
    extra
        .tensors
        .push(("head/mmoe/unused".into(), tensor::Matrix::zeros(1, 1)));
    let e = extra.to_bytes().unwrap_err().to_string();
    assert!(e.contains("head/mmoe/unused"), "{e}");

    let mut reshaped = good.clone();
    let (_, m) = reshaped
        .tensors
        .iter_mut()
        .find(|(n, _)| n.ends_with("gate/0/weight"))
        .unwrap();
    *m = tensor::Matrix::zeros(3, 3);
    let e = reshaped.to_bytes().unwrap_err().to_string();
    assert!(e.contains("gate/0/weight") && e.contains("shape"), "{e}");

    // A file claiming to be another kind than its tensors.
    let mut other = good.clone();
    other.config.model = ModelKind::from_name("ple").unwrap();
    assert!(other.to_bytes().is_err());
    let mut chain = good;
    chain.config.model = ModelKind::Resflow;
    let e = chain.to_bytes().unwrap_err().to_string();
    assert!(e.contains("head/resflow") && e.contains("missing"), "{e}");
}

#[test]
fn model_file_fuzz_corpus_is_read_without_panics() {
    // The seed corpus of the capi_model_bytes fuzz target (written by
    // `cargo run -p resflow --example make_model_corpus`): a small file of every kind loads
    // and scores; the damaged ones are errors.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/capi_model_bytes");
    let mut kinds = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match Model::from_bytes(&bytes, &name) {
            Ok(model) => {
                assert!(name.ends_with(".safetensors"), "{name} should not load");
                kinds.push(model.config.model.name().to_string());
                Scorer::new(model).unwrap();
            }
            Err(e) => assert!(!name.ends_with(".safetensors"), "{name}: {e}"),
        }
    }
    kinds.sort();
    let mut all: Vec<String> = ModelKind::NAMES.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(kinds, all);
}
