//! A training run end to end on a small synthetic funnel: the cadence of checkpoints and
//! evaluations, the inputs refused before any step, resuming, the one-call run and its
//! report, and the comparison of model kinds.

mod common;

use common::{data, temp};

use metrics::EvalReport;
use resflow::session::{EvalPoint, Progress, Schedule, config_for_tasks, run_epochs};
use resflow::{
    CompareOptions, Error, ModelConfig, RunError, Session, SessionOptions, StepStats, Trainer,
};

fn tiny() -> ModelConfig {
    ModelConfig::from_json(r#"{"embedding_dim": 4, "hidden": [8], "batch_size": 256}"#).unwrap()
}

/// Everything a run reports, in order.
#[derive(Default)]
struct Record {
    events: Vec<String>,
    steps: u64,
    notes: Vec<String>,
}

impl Progress for Record {
    fn epoch_started(&mut self, run: &str, epoch: usize, epochs: usize, rows: u64) {
        self.events.push(format!("{run} {epoch}/{epochs} {rows}"));
        if epoch == 1 {
            // A new trainer (a comparison trains several).
            self.steps = 0;
        }
    }
    fn step(&mut self, trainer: &Trainer, stats: &StepStats) -> Result<(), Error> {
        self.steps += 1;
        assert_eq!(trainer.step, self.steps);
        assert!(stats.rows > 0 && stats.losses.iter().all(|l| l.is_finite()));
        Ok(())
    }
    fn epoch_finished(&mut self) {
        self.events.push("end".into());
    }
    fn evaluated(&mut self, point: EvalPoint, report: &EvalReport) {
        assert!(report.rows > 0);
        self.events.push(format!("{point:?}"));
    }
    fn note(&mut self, text: &str) {
        self.notes.push(text.to_string());
    }
}

#[test]
fn the_schedule_checkpoints_and_evaluates_on_its_cadence() {
    let (train_dir, train) = data("sched-train", 2000, 1);
    let (eval_dir, eval) = data("sched-eval", 1000, 2);
    let ckpt = temp("sched-ckpt");
    let mut t = Trainer::new(tiny(), resflow::layout_of(train.schema()), 1).unwrap();
    let schedule = Schedule {
        epochs: 2,
        checkpoint_dir: Some(&ckpt),
        checkpoint_every: Some(3),
        eval: Some(&eval),
        eval_every: Some(5),
    };
    let mut record = Record::default();
    let summary = run_epochs(&mut t, &train, &schedule, "run", &mut record).unwrap();
    // 2000 rows in batches of 256: 8 steps an epoch.
    assert_eq!((summary.steps, t.step, t.epoch), (16, 16, 2));
    assert_eq!(summary.threads, 1);
    assert!(summary.samples_per_s > 0.0 && summary.seconds > 0.0);
    assert_eq!(
        record.events,
        [
            "run 1/2 2000",
            "Step(5)",
            "end",
            "Epoch(1)",
            "run 2/2 2000",
            "Step(10)",
            "Step(15)",
            "end",
        ]
    );
    // The last checkpoint is the end of the run.
    let resumed = Trainer::load_checkpoint(&ckpt, 1).unwrap();
    assert_eq!((resumed.epoch, resumed.step), (2, 16));
    // A trainer already there trains nothing more.
    let again = run_epochs(&mut t, &train, &schedule, "run", &mut Record::default()).unwrap();
    assert_eq!(again.steps, 0);
    for d in [train_dir, eval_dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_progress_error_stops_the_run() {
    let (dir, train) = data("stop-train", 2000, 1);
    let mut t = Trainer::new(tiny(), resflow::layout_of(train.schema()), 1).unwrap();
    let e = t
        .fit(&train, 3, |t, _| {
            if t.step == 4 {
                return Err(RunError::Options("stopped".into()).into());
            }
            Ok(())
        })
        .unwrap_err();
    assert!(e.to_string().contains("stopped"), "{e}");
    assert_eq!((t.step, t.epoch), (4, 0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn configuration_tasks_follow_the_data_or_must_match_it() {
    let three: Vec<String> = ["click", "cart", "order"].map(String::from).into();
    let c = config_for_tasks(None, &three).unwrap();
    let names: Vec<&str> = c.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["click", "cart", "order"]);
    // Tasks beyond the defaults' two take the last default's weights.
    let d = ModelConfig::default().tasks;
    assert_eq!(c.tasks[2].pos_weight, d[1].pos_weight);
    assert_eq!(c.tasks[2].loss_weight, d[1].loss_weight);
    let two = config_for_tasks(None, &["click".into(), "conversion".into()]).unwrap();
    assert_eq!(two, ModelConfig::default());
    match config_for_tasks(Some(tiny()), &three) {
        Err(Error::Run(RunError::Tasks { config, data })) => {
            assert_eq!(config, ["click", "conversion"]);
            assert_eq!(data, three);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_inputs_are_refused_before_any_step() {
    let (train_dir, train) = data("bad-train", 2000, 1);
    let empty_dir = temp("bad-empty");
    shards::synth::generate(
        &shards::synth::SynthConfig {
            rows: 0,
            ..Default::default()
        },
        &empty_dir,
    )
    .unwrap();
    let empty = shards::Dataset::open(&empty_dir).unwrap();
    let three_dir = temp("bad-three");
    shards::synth::generate(
        &shards::synth::SynthConfig {
            rows: 500,
            tasks: 3,
            ..Default::default()
        },
        &three_dir,
    )
    .unwrap();
    let three = shards::Dataset::open(&three_dir).unwrap();
    let ckpt = temp("bad-ckpt");
    let start = |train, eval, config, options| {
        Session::start(train, eval, config, options)
            .map(|_| ())
            .unwrap_err()
    };
    let run = |e: Error| match e {
        Error::Run(r) => r,
        other => panic!("not a run error: {other}"),
    };
    let opts = SessionOptions::default;
    assert!(matches!(
        run(start(&empty, None, None, opts())),
        RunError::EmptyTrain
    ));
    assert!(matches!(
        run(start(&train, Some(&empty), None, opts())),
        RunError::EmptyEval
    ));
    assert!(matches!(
        run(start(&train, Some(&three), None, opts())),
        RunError::EvalSchema(_)
    ));
    assert!(matches!(
        run(start(
            &train,
            None,
            None,
            SessionOptions {
                resume: true,
                ..opts()
            }
        )),
        RunError::ResumeWithoutDir
    ));
    let resume = SessionOptions {
        resume: true,
        threads: Some(1),
        checkpoint_dir: Some(ckpt.clone()),
        ..opts()
    };
    assert!(matches!(
        run(start(&train, None, None, resume.clone())),
        RunError::NoCheckpoint { .. }
    ));
    for bad in [
        SessionOptions {
            eval_every: Some(0),
            ..opts()
        },
        SessionOptions {
            epochs: Some(0),
            ..opts()
        },
        SessionOptions {
            checkpoint_every: Some(2),
            ..opts()
        },
        SessionOptions {
            eval_every: Some(2),
            ..opts()
        },
    ] {
        assert!(matches!(
            run(start(&train, None, None, bad)),
            RunError::Options(_)
        ));
    }

    // A checkpoint resumes with its own configuration, or the same one with more epochs,
    // never with another.
    let first = SessionOptions {
        threads: Some(1),
        checkpoint_dir: Some(ckpt.clone()),
        ..opts()
    };
    let mut s = Session::start(&train, None, Some(tiny()), first).unwrap();
    assert!(!s.resumed());
    s.train(&mut resflow::session::Quiet).unwrap();
    let mut other = tiny();
    other.hidden = vec![16];
    match run(start(&train, None, Some(other), resume.clone())) {
        RunError::ConfigDiffers { differences, .. } => {
            assert!(
                differences.iter().any(|d| d.contains("hidden")),
                "{differences:?}"
            )
        }
        e => panic!("{e}"),
    }
    let more = SessionOptions {
        epochs: Some(2),
        ..resume.clone()
    };
    let mut s = Session::start(&train, None, Some(tiny()), more).unwrap();
    assert!(s.resumed());
    assert_eq!((s.trainer.epoch, s.epochs()), (1, 2));
    assert_eq!(s.train(&mut resflow::session::Quiet).unwrap().steps, 8);
    // The checkpoint's model does not read three tasks.
    assert!(matches!(
        run(start(&three, None, None, resume)),
        RunError::TrainLayout(_)
    ));
    for d in [train_dir, empty_dir, three_dir, ckpt] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn one_call_trains_evaluates_and_reports() {
    let (train_dir, train) = data("call-train", 3000, 1);
    let (eval_dir, eval) = data("call-eval", 1000, 2);
    let options = SessionOptions {
        threads: Some(2),
        epochs: Some(1),
        ..Default::default()
    };
    let (trainer, report) = resflow::train(
        &train,
        Some(&eval),
        Some(tiny()),
        options,
        &mut resflow::session::Quiet,
    )
    .unwrap();
    assert_eq!(trainer.epoch, 1);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["train"]["threads"], 2);
    assert_eq!(json["train"]["steps"], 12);
    assert_eq!(json["eval"]["rows"], 1000);
    assert_eq!(json["eval"]["tasks"][1]["name"], "conversion");
    // The final evaluation has the default list metrics.
    assert!(json["eval"]["wr_at_k"]["additive"]["100"].is_number());
    // It is the trained model's: the model file scores the same AUC through the scorer.
    let served = resflow::evaluate_model(
        &trainer.export().unwrap(),
        &eval,
        &resflow::ListOptions::default(),
        resflow::Precision::F32,
    )
    .unwrap();
    let (a, b) = (
        served.tasks[0].auc.unwrap(),
        report.eval.as_ref().unwrap().tasks[0].auc.unwrap(),
    );
    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    // No evaluation set, no evaluation part.
    let (_, alone) = resflow::train(
        &train,
        None,
        Some(tiny()),
        SessionOptions {
            threads: Some(1),
            epochs: Some(1),
            ..Default::default()
        },
        &mut resflow::session::Quiet,
    )
    .unwrap();
    let json = serde_json::to_value(&alone).unwrap();
    assert!(json.get("eval").is_none() && json.get("train").is_some());
    for d in [train_dir, eval_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn compare_trains_every_kind_per_seed() {
    let (train_dir, train) = data("cmp-train", 2000, 1);
    let (eval_dir, eval) = data("cmp-eval", 1000, 2);
    let options = CompareOptions {
        models: Some(vec!["resflow".into(), "esmm".into()]),
        seeds: vec![3, 5],
        epochs: Some(1),
        threads: 1,
        latency_calls: 2,
        ..Default::default()
    };
    let mut record = Record::default();
    let report = resflow::compare(&train, &eval, Some(tiny()), &options, &mut record).unwrap();
    let started: Vec<&str> = record
        .events
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "end")
        .collect();
    assert_eq!(
        started,
        [
            "resflow seed 3/2 1/1 2000",
            "resflow seed 5/2 1/1 2000",
            "esmm seed 3/2 1/1 2000",
            "esmm seed 5/2 1/1 2000"
        ]
    );
    assert_eq!((report.seeds.clone(), report.epochs), (vec![3, 5], 1));
    let names: Vec<&str> = report.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["resflow", "esmm"]);
    for m in &report.models {
        assert_eq!(m.config.embedding_dim, 4);
        assert_eq!(m.config.model.name(), m.model);
        assert_eq!(m.tasks.len(), 2);
        assert_eq!(m.tasks[0].auc.values.len(), 2);
        assert!(m.tasks[0].auc.mean > 0.5, "{}", m.model);
        assert!(m.score_500_p50_ms.mean > 0.0 && m.tape_500_p50_ms.mean > 0.0);
        assert!(m.dense_parameters > 0 && m.parameters > m.dense_parameters);
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["models"][1]["model"], "esmm");

    // Three tasks and no list of kinds: every kind but ESMM, and a note saying so.
    let three = |name: &str, seed| {
        let d = temp(name);
        shards::synth::generate(
            &shards::synth::SynthConfig {
                rows: 1000,
                seed,
                tasks: 3,
                max_vocab: 50,
                ..Default::default()
            },
            &d,
        )
        .unwrap();
        (shards::Dataset::open(&d).unwrap(), d)
    };
    let ((t3, t3_dir), (e3, e3_dir)) = (three("cmp-t3", 1), three("cmp-e3", 2));
    let one = CompareOptions {
        models: None,
        seeds: vec![1],
        latency_calls: 1,
        ..options.clone()
    };
    let mut record = Record::default();
    let report = resflow::compare(&t3, &e3, None, &one, &mut record).unwrap();
    let names: Vec<&str> = report.models.iter().map(|m| m.model.as_str()).collect();
    let expected: Vec<&str> = resflow::config::ModelKind::NAMES
        .into_iter()
        .filter(|&n| {
            !resflow::config::ModelKind::from_name(n)
                .unwrap()
                .two_tasks_only()
        })
        .collect();
    assert_eq!(names, expected);
    assert!(
        record
            .notes
            .iter()
            .any(|n| n.contains("ESMM is defined for two tasks")),
        "{:?}",
        record.notes
    );
    assert_eq!(report.models[0].tasks[2].name, "order");
    // The evaluation set must be the training set's kind.
    let err = resflow::compare(&t3, &eval, None, &one, &mut Record::default()).unwrap_err();
    assert!(matches!(err, Error::Run(RunError::EvalSchema(_))), "{err}");
    for d in [t3_dir, e3_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
    for d in [train_dir, eval_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn a_sharded_rank_makes_only_its_rows_and_refuses_to_train_alone() {
    let (_dir, train) = data("shard-alone", 600, 1);
    let layout = resflow::layout_of(train.schema());
    let whole = Trainer::new(tiny(), layout.clone(), 1).unwrap();
    let (_, full) = whole.table_bytes();
    let mut held = 0;
    for rank in 0..2 {
        let mut t = Trainer::new_sharded(tiny(), layout.clone(), 1, (rank, 2)).unwrap();
        let (mine, all) = t.table_bytes();
        assert_eq!(all, full);
        assert!(
            (0.4..0.6).contains(&(mine as f64 / all as f64)),
            "{mine} of {all}"
        );
        assert_eq!(t.table_peak_bytes(), mine, "nothing larger was ever held");
        assert_eq!(t.params().tensors, whole.params().tensors);
        held += mine;
        // Without the other rank's rows a step would read zeros: refused.
        let mut batch = train.new_batch();
        assert!(train.batches(64, None).next_into(&mut batch));
        let e = t.train_step(&batch).unwrap_err().to_string();
        assert!(e.contains("attach it to the other processes"), "{e}");
    }
    assert_eq!(held, full, "the two ranks hold every row once");
}
