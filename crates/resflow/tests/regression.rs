//! Regression end to end on the play-time dataset: the loss of both forms against finite
//! differences, then ResFlow's chained thresholds, independent towers and direct
//! regression each beat the best constant, stay above the known floor, and their exported
//! files serve the value their trainers predict.

mod common;

use autodiff::{Grads, Tape};
use common::temp;

use resflow::network::{Forward, Mode, Scratch};
use resflow::regression::{self, Decoder};
use resflow::{Model, ModelConfig, Scorer, Trainer};
use shards::Dataset;
use shards::playtime::{PlayTimeConfig, PlayTimeInfo, generate};

fn plays(name: &str, rows: usize, seed: u64) -> (std::path::PathBuf, Dataset, PlayTimeInfo) {
    let dir = temp(name);
    let info = generate(
        &PlayTimeConfig {
            rows,
            seed,
            max_vocab: 300,
            rows_per_shard: 10_000,
            ..PlayTimeConfig::default()
        },
        &dir,
    )
    .unwrap();
    let ds = Dataset::open(&dir).unwrap();
    (dir, ds, info)
}

/// The three regression models of the comparison, at small sizes.
fn config(which: &str) -> ModelConfig {
    let (model, reg) = match which {
        "resflow" => (
            r#"{"kind": "resflow"}, "residual": {"hidden": false}"#,
            r#"{"target": "play_time", "percentiles": [10, 20, 30, 40, 50, 60, 70, 80, 90]}"#,
        ),
        "independent" => (
            r#"{"kind": "independent"}"#,
            r#"{"target": "play_time", "percentiles": [10, 20, 30, 40, 50, 60, 70, 80, 90]}"#,
        ),
        _ => (
            r#"{"kind": "independent"}"#,
            r#"{"target": "play_time", "form": "direct"}"#,
        ),
    };
    ModelConfig::from_json(&format!(
        r#"{{"model": {model}, "regression": {reg}, "embedding_dim": 8, "hidden": [32, 16],
            "batch_norm": "none", "batch_size": 256, "optimizer": {{"learning_rate": 0.003}}}}"#
    ))
    .unwrap()
}

#[test]
fn the_regression_losses_match_finite_differences() {
    let (dir, data, _) = plays("reg-grad", 40, 5);
    let mut batch = data.new_batch();
    assert!(data.batches(40, None).next_into(&mut batch));
    for which in ["resflow", "direct"] {
        let mut c = config(which);
        if which == "resflow" {
            c.regression.as_mut().unwrap().percentiles = vec![30.0, 60.0];
        }
        regression::prepare(&mut c, &data).unwrap();
        let model = Model::random(c, resflow::layout_of(data.schema()), 3).unwrap();
        let (net, mut store) = resflow::network::Network::from_params(&model).unwrap();
        // PReLU slopes of 1 make the towers smooth (no kink for a difference quotient to
        // straddle across 40 rows): what is checked is the loss on top of them.
        for p in store
            .dense
            .iter_mut()
            .filter(|p| p.name.ends_with("/slope"))
        {
            p.value.as_mut_slice().fill(1.0);
        }
        let loss = |store: &autodiff::ParamStore, grads: Option<&mut Grads>| {
            let (mut tape, mut out) = (Tape::new(), Forward::default());
            net.forward(
                &mut tape,
                store,
                &batch.view(),
                Mode::Train,
                40.0,
                true,
                &mut Scratch::default(),
                &mut out,
            )
            .unwrap();
            let l = out.loss.unwrap();
            if let Some(g) = grads {
                tape.backward(l, g).unwrap();
            }
            tape.value(l)[0] as f64
        };
        let mut grads = Grads::zeros_like(&store);
        loss(&store, Some(&mut grads));
        let (mut checked, mut kinks) = (0, 0);
        for p in 0..store.dense.len() {
            for i in 0..store.dense[p].value.as_slice().len() {
                let orig = store.dense[p].value.as_slice()[i];
                let mut at = |h: f32| {
                    store.dense[p].value.as_mut_slice()[i] = orig + h;
                    let up = loss(&store, None);
                    store.dense[p].value.as_mut_slice()[i] = orig - h;
                    let down = loss(&store, None);
                    store.dense[p].value.as_mut_slice()[i] = orig;
                    (up - down) / (2.0 * h as f64)
                };
                let (coarse, fine, finer) = (at(2e-3), at(1e-3), at(5e-4));
                let analytic = grads.dense[p][i] as f64;
                let tol = |v: f64| 2e-2 * analytic.abs().max(v.abs()) + 2e-3;
                if (coarse - fine).abs() > tol(coarse) || (fine - finer).abs() > tol(fine) {
                    kinks += 1; // the steps disagree: no reference here
                    continue;
                }
                checked += 1;
                assert!(
                    (analytic - fine).abs() <= tol(fine),
                    "{which}: d/d {}[{i}] analytic {analytic} vs numeric {fine}",
                    store.dense[p].name
                );
            }
        }
        assert!(
            kinks * 50 <= checked,
            "{which}: {kinks} kinks, {checked} checked"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn chained_thresholds_independent_towers_and_direct_regression_learn_and_serve() {
    let (train_dir, train, _) = plays("reg-train", 40_000, 31);
    let (eval_dir, eval, floor) = plays("reg-eval", 10_000, 32);
    let constant = regression::constant_baseline(&train, &eval, "play_time").unwrap();
    let files = temp("reg-files");
    std::fs::create_dir_all(&files).unwrap();
    for which in ["resflow", "independent", "direct"] {
        let mut c = config(which);
        regression::prepare(&mut c, &train).unwrap();
        let heads = c.tasks.len();
        assert_eq!(heads, if which == "direct" { 1 } else { 9 }, "{which}");
        let mut t = Trainer::new(c, resflow::layout_of(train.schema()), 2).unwrap();
        t.fit(&train, 2, |_, _| Ok(())).unwrap();
        let path = files.join(format!("{which}.safetensors"));
        t.export().unwrap().save(&path).unwrap();
        let scorer = Scorer::new(Model::load(&path).unwrap()).unwrap();
        let report = regression::evaluate(&scorer, &eval).unwrap();
        println!(
            "{which}: MSE {:.1} MAE {:.2} (constant {:.1}, floor {:.1})",
            report.mse, report.mae, constant.mse, floor.floor_mse
        );
        assert!(
            report.mse < 0.97 * constant.mse && report.mse > 0.9 * floor.floor_mse,
            "{which}: MSE {} (constant {}, floor {})",
            report.mse,
            constant.mse,
            floor.floor_mse
        );
        // The served value is the trainer's: decode its evaluation-pass probabilities.
        let decoder = scorer
            .model()
            .config
            .regression
            .as_ref()
            .unwrap()
            .decoder()
            .unwrap();
        let mut predicted = Vec::new();
        t.predict(&eval, |p, _| {
            for row in p.chunks_exact(heads) {
                predicted.push(match &decoder {
                    Decoder::Direct { .. } => {
                        let z = (row[0] / (1.0 - row[0])).ln();
                        decoder.value_from_logits(&[z])
                    }
                    _ => decoder.value_from_probabilities(row).unwrap(),
                });
            }
            Ok(())
        })
        .unwrap();
        let mut served = Vec::new();
        resflow::score_dataset(&scorer, &eval, |_, v, _| {
            served.extend_from_slice(v);
            Ok(())
        })
        .unwrap();
        let scale = served.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let gap = testkit::max_abs_diff(&predicted, &served) / scale;
        assert!(
            gap <= 10.0 * tensor::tolerance::MODEL,
            "{which}: served vs trained, relative gap {gap}"
        );
    }
    for d in [train_dir, eval_dir, files] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn unresolved_or_mismatched_regression_is_a_clear_error() {
    let (dir, data, _) = plays("reg-errors", 200, 9);
    let layout = resflow::layout_of(data.schema());
    let err = Trainer::new(config("resflow"), layout.clone(), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not resolved"), "{err}");
    let mut c = config("resflow");
    c.regression.as_mut().unwrap().target = "watch_time".into();
    let err = regression::prepare(&mut c, &data).unwrap_err().to_string();
    assert!(err.contains("\"watch_time\" is not a column"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Counts the regression evaluations a run reports during training.
#[derive(Default)]
struct Evaluations {
    regression: Vec<(resflow::session::EvalPoint, f64)>,
    ranking: usize,
}

impl resflow::Progress for Evaluations {
    fn evaluated(&mut self, _: resflow::session::EvalPoint, _: &metrics::EvalReport) {
        self.ranking += 1;
    }
    fn evaluated_regression(
        &mut self,
        point: resflow::session::EvalPoint,
        report: &regression::RegressionEval,
    ) {
        assert!(report.rows > 0 && report.mse.is_finite() && report.mae.is_finite());
        self.regression.push((point, report.mse));
    }
}

#[test]
fn every_regression_form_trains_through_a_session_with_its_report() {
    use resflow::session::EvalPoint;
    use resflow::{Session, SessionOptions};
    let (train_dir, train, _) = plays("reg-session-train", 3000, 41);
    let (eval_dir, eval, _) = plays("reg-session-eval", 1000, 42);
    for which in ["resflow", "independent", "direct"] {
        let ckpt = temp(&format!("reg-session-ckpt-{which}"));
        let options = SessionOptions {
            threads: Some(2),
            epochs: Some(1),
            eval_every: Some(5),
            checkpoint_dir: Some(ckpt.clone()),
            ..Default::default()
        };
        let mut progress = Evaluations::default();
        let (trainer, report) = resflow::train(
            &train,
            Some(&eval),
            Some(config(which)),
            options.clone(),
            &mut progress,
        )
        .unwrap();
        // 3000 rows in batches of 256: 12 steps, evaluated at steps 5 and 10 (not after
        // the last epoch: that is the final evaluation).
        let points: Vec<EvalPoint> = progress.regression.iter().map(|e| e.0).collect();
        assert_eq!(points, [EvalPoint::Step(5), EvalPoint::Step(10)], "{which}");
        assert_eq!(progress.ranking, 0);
        let r = report.regression.as_ref().expect("a regression report");
        assert!(report.eval.is_none() && report.train.is_some());
        assert_eq!((r.target.as_str(), r.rows), ("play_time", 1000));
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["regression"]["mse"].is_number() && json.get("eval").is_none());
        if which == "direct" {
            assert!(r.thresholds.is_empty() && json["regression"].get("thresholds").is_none());
        } else {
            assert_eq!(r.thresholds.len(), trainer.network.config.tasks.len());
            for (t, task) in r.thresholds.iter().zip(&trainer.network.config.tasks) {
                assert_eq!(t.head, task.name);
                assert!(t.auc.is_some_and(|a| (0.0..=1.0).contains(&a)), "{t:?}");
            }
        }
        // The trainer's decoded prediction is the served one: the same errors through the
        // scorer, up to the model-level tolerance.
        let served =
            regression::evaluate(&Scorer::new(trainer.export().unwrap()).unwrap(), &eval).unwrap();
        let gap = (served.mse - r.mse).abs() / r.mse;
        assert!(
            gap <= 10.0 * tensor::tolerance::MODEL as f64,
            "{which}: served MSE {} vs trained {}",
            served.mse,
            r.mse
        );
        // Resuming with the same configuration (resolved again from the same data) trains
        // the second epoch.
        let mut s = Session::start(
            &train,
            Some(&eval),
            Some(config(which)),
            SessionOptions {
                epochs: Some(2),
                resume: true,
                eval_every: None,
                ..options
            },
        )
        .unwrap();
        assert!(s.resumed() && s.trainer.epoch == 1);
        s.train(&mut resflow::session::Quiet).unwrap();
        assert_eq!(s.trainer.epoch, 2);
        let again = s.final_evaluation().unwrap();
        assert!(again.regression.is_some() && again.train.is_none());
        std::fs::remove_dir_all(ckpt).unwrap();
    }
    for d in [train_dir, eval_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_target_of_the_wrong_kind_is_refused_before_training() {
    use resflow::{Session, SessionOptions};
    let (dir, plays_data, _) = plays("reg-kinds-plays", 300, 5);
    let (ranking_dir, ranking) = common::data("reg-kinds-ranking", 300, 5);
    let options = SessionOptions {
        threads: Some(1),
        epochs: Some(1),
        ..Default::default()
    };
    let err = |train: &Dataset, eval: Option<&Dataset>, c: Option<ModelConfig>| {
        Session::start(train, eval, c, options.clone())
            .unwrap_err()
            .to_string()
    };
    // A regression configuration on a dataset of 0/1 tasks: its target is not there.
    let e = err(&ranking, None, Some(config("resflow")));
    assert!(e.contains("\"play_time\" is not a column"), "{e}");
    // A 0/1 label named as the target: it has no targets column.
    let mut c = config("direct");
    c.regression.as_mut().unwrap().target = "click".into();
    let e = err(&ranking, None, Some(c));
    assert!(e.contains("holds 0/1 labels"), "{e}");
    // The defaults (0/1 tasks) on a continuous target: not labels.
    let e = err(&plays_data, None, None);
    assert!(e.contains("continuous target, not 0/1 labels"), "{e}");
    // A ranking evaluation set for a regression run.
    let e = err(&plays_data, Some(&ranking), Some(config("resflow")));
    assert!(e.contains("evaluation dataset does not match"), "{e}");
    // A served regression model measured on data without its target.
    let mut c = config("resflow");
    regression::prepare(&mut c, &plays_data).unwrap();
    let t = Trainer::new(c, resflow::layout_of(plays_data.schema()), 1).unwrap();
    let scorer = Scorer::new(t.export().unwrap()).unwrap();
    let e = regression::evaluate(&scorer, &ranking)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a column"), "{e}");
    for d in [dir, ranking_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
