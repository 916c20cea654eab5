//! The command line as a user runs it: kernel tier selection, the GEMM benchmark's JSON, a
//! model's life cycle (gen, train, eval, export, score, compare) and the mistakes each command
//! must refuse clearly. The `cli_*` tests share one fixture builder ([`Fixture`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn resflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resflow"))
}

#[test]
fn resflow_kernel_forces_a_tier_and_rejects_unknown_ones() {
    let out = resflow()
        .arg("info")
        .env("RESFLOW_KERNEL", "portable")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kernel tier in use: portable"), "{text}");
    assert!(text.contains("int8 kernel:        portable"), "{text}");

    let out = resflow()
        .arg("info")
        .env("RESFLOW_KERNEL", "sse9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown kernel tier") && err.contains("sse9"),
        "{err}"
    );

    // A tier the CPU lacks is an error naming what it has; every supported one is accepted.
    for tier in tensor::Tier::ALL {
        let out = resflow()
            .arg("info")
            .env("RESFLOW_KERNEL", tier.name())
            .output()
            .unwrap();
        assert_eq!(out.status.success(), tier.is_supported(), "{tier}");
    }
}

#[test]
fn bench_score_times_each_precision_and_compares_int8_with_f32() {
    let out = run_ok(&[
        "bench",
        "score",
        "--json",
        "--candidates",
        "20",
        "--calls",
        "20",
        "--max-vocab",
        "500",
        "--precision",
        "f32",
        "--precision",
        "int8",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON value");
    let r = v["requests"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0]["precision"].as_str(), r[1]["precision"].as_str()),
        (Some("f32"), Some("int8"))
    );
    assert!(r[0]["deviation"].is_null());
    let d = &r[1]["deviation"];
    let max = d["max_abs"].as_f64().unwrap();
    assert!(max > 0.0 && max < 0.05, "{d}");
    assert_eq!(d["compared"].as_u64(), Some(2 * 8 * 20 * 2));
    for x in r {
        assert!(x["p50_ms"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_gemm_json_is_one_object_with_every_field() {
    let out = run_ok(&[
        "bench",
        "gemm",
        "--json",
        "--rounds",
        "1",
        "--round-ms",
        "1",
        "--shape",
        "40,33,17",
        "--shape",
        "20,1,9,TN",
        "--kernel",
        "portable",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is one JSON value");
    assert_eq!(v["kernel"], "portable");
    // The figures carry the CPU they were measured on.
    assert!(
        !v["cpu"]["brand"].as_str().unwrap().is_empty(),
        "cpu in {v}"
    );
    assert!(v["peak_gflops"].as_f64().unwrap() > 0.0);
    let shapes = v["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 2);
    assert_eq!(
        (shapes[1]["m"].as_u64(), shapes[1]["trans_a"].as_bool()),
        (Some(20), Some(true))
    );
    for s in shapes {
        for key in ["ours_gflops", "reference_gflops", "ratio"] {
            assert!(s[key].as_f64().unwrap() > 0.0, "{key} in {s}");
        }
    }
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    let out = resflow()
        .args(["bench", "gemm", "--shape", "4,4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected M,N,K"));
    let out = resflow()
        .args(["bench", "gemm", "--kernel", "mmx"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kernel tier"));
}

/// A fresh temporary directory of command-line inputs and outputs, removed when dropped,
/// and the builders of what the tests run the commands on.
struct Fixture {
    dir: PathBuf,
}

/// The small trained setup of [`small`]: paths of the data, the configuration and the
/// model file.
struct Small {
    data: String,
    config: String,
    model: String,
}

/// A 2000-row dataset (tables of at most 50 ids), a tiny configuration and a model trained
/// on them (one thread, one epoch): made once, by whichever test asks first, and then only
/// read (each test writes its outputs into a [`Fixture`] of its own). It lives, for the
/// life of the test process, in the build's temporary directory under the process id;
/// the directories of earlier test processes that have ended are removed when it is made.
fn small() -> &'static Small {
    static SMALL: OnceLock<(Fixture, Small)> = OnceLock::new();
    let (_, small) = SMALL.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_ended_small_fixtures(tmp);
        let f = Fixture::at(tmp.join(format!("cli-small-{}", std::process::id())));
        let data = f.dataset("data", 2000, &["--max-vocab", "50"]);
        let config = f.config(
            "tiny.json",
            r#"{"embedding_dim": 4, "hidden": [8], "batch_size": 256}"#,
        );
        let model = f.path("m.safetensors");
        let small = Small {
            data,
            config,
            model,
        };
        run_ok(&join(&small.train(), &["--out", &small.model]));
        (f, small)
    });
    small
}

/// Removes the `cli-small-<pid>` directories of `tmp` whose process has ended (where the
/// system lists its processes in `/proc`).
fn remove_ended_small_fixtures(tmp: &Path) {
    let (Ok(entries), true) = (std::fs::read_dir(tmp), Path::new("/proc/self").exists()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix("cli-small-"));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Small {
    /// `resflow train` on the data with the configuration, one thread: the arguments.
    fn train(&self) -> [&str; 7] {
        [
            "train",
            "--train",
            &self.data,
            "--config",
            &self.config,
            "--threads",
            "1",
        ]
    }
}

impl Fixture {
    fn new(name: &str) -> Self {
        Self::at(std::env::temp_dir().join(format!("resflow-cli-{}-{name}", std::process::id())))
    }

    /// The directory `dir`, emptied.
    fn at(dir: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// The path of `name` in the directory, as an argument.
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `resflow gen --rows <rows> --out <name> <extra...>`; the dataset's path.
    fn dataset(&self, name: &str, rows: usize, extra: &[&str]) -> String {
        let out = self.path(name);
        let rows = rows.to_string();
        run_ok(&join(&["gen", "--rows", &rows, "--out", &out], extra));
        out
    }

    /// The JSON file `name` of the directory (a report), parsed.
    fn json(&self, name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
    }

    /// A model configuration file `name` holding `json`; its path.
    fn config(&self, name: &str, json: &str) -> String {
        std::fs::write(self.dir.join(name), json).unwrap();
        self.path(name)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `args`, which must fail with a message containing `needle`, and no panic.
fn fails_clearly(args: &[&str], needle: &str) {
    let out = resflow().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(needle) && !err.contains("panicked"),
        "{args:?}: {err}"
    );
}

fn run_ok(args: &[&str]) -> String {
    let out = resflow().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gen_train_eval_export_score_round_trip() {
    let f = Fixture::new("pipeline");
    let p = |n: &str| f.path(n);
    let dir = &f.dir;
    f.dataset("train", 6000, &["--seed", "1"]);
    f.dataset("eval", 3000, &["--seed", "2", "--csv", &p("eval.csv")]);
    f.config(
        "config.json",
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256}"#,
    );
    let out = run_ok(&[
        "train",
        "--train",
        &p("train"),
        "--eval",
        &p("eval"),
        "--config",
        &p("config.json"),
        "--threads",
        "2",
        "--epochs",
        "2",
        "--checkpoint-dir",
        &p("ckpt"),
        "--report",
        &p("report.json"),
        "--out",
        &p("model.safetensors"),
    ]);
    assert!(out.contains("samples/s"), "{out}");
    let report = f.json("report.json");
    assert_eq!(report["train"]["threads"], 2);
    assert!(report["train"]["samples_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["eval"]["rows"], 3000);
    assert_eq!(report["eval"]["tasks"][1]["name"], "conversion");
    for key in ["auc", "gauc", "logloss"] {
        assert!(report["eval"]["tasks"][0][key].is_number(), "{key}");
    }
    assert!(report["eval"]["wr_at_k"]["additive"]["10"].is_number());
    assert!(report["eval"]["wr_at_k"]["multiplicative"]["100"].is_number());

    // The model file and the checkpoint evaluate identically; export gives the same model.
    run_ok(&[
        "eval",
        "--model",
        &p("model.safetensors"),
        "--data",
        &p("eval"),
        "--report",
        &p("m.json"),
    ]);
    run_ok(&[
        "eval",
        "--model",
        &p("ckpt"),
        "--data",
        &p("eval"),
        "--report",
        &p("c.json"),
    ]);
    let m = f.json("m.json");
    let c = f.json("c.json");
    let auc = |v: &serde_json::Value| v["eval"]["tasks"][0]["auc"].as_f64().unwrap();
    assert!((auc(&m) - auc(&c)).abs() < 1e-6);
    // The model file scored with int8 GEMMs: nearly the same AUC; a checkpoint is
    // evaluated in f32 only, and says so.
    run_ok(&[
        "eval",
        "--model",
        &p("model.safetensors"),
        "--data",
        &p("eval"),
        "--precision",
        "int8",
        "--report",
        &p("q.json"),
    ]);
    let q = f.json("q.json");
    for t in 0..2 {
        let auc = |v: &serde_json::Value| v["eval"]["tasks"][t]["auc"].as_f64().unwrap();
        assert!(
            (auc(&q) - auc(&m)).abs() < 0.01,
            "task {t}: int8 AUC {} against f32 {}",
            auc(&q),
            auc(&m)
        );
    }
    fails_clearly(
        &[
            "eval",
            "--model",
            &p("ckpt"),
            "--data",
            &p("eval"),
            "--precision",
            "int8",
        ],
        "export it",
    );
    fails_clearly(
        &[
            "eval",
            "--model",
            &p("model.safetensors"),
            "--data",
            &p("eval"),
            "--precision",
            "int4",
        ],
        "int4",
    );
    run_ok(&[
        "export",
        "--checkpoint",
        &p("ckpt"),
        "--out",
        &p("exported.safetensors"),
    ]);
    let (exported, trained) = (
        resflow::Model::load(&dir.join("exported.safetensors")).unwrap(),
        resflow::Model::load(&dir.join("model.safetensors")).unwrap(),
    );
    assert!(
        exported == trained,
        "export of the last checkpoint differs from the trained model"
    );
    run_ok(&[
        "score",
        "--model",
        &p("exported.safetensors"),
        "--data",
        &p("eval"),
        "--out",
        &p("scores.csv"),
    ]);
    let scores = std::fs::read_to_string(dir.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 3001);
    assert!(scores.starts_with("row,group,p_click,p_conversion,fused"));

    // Converting the CSV twin of the evaluation set gives the same dataset.
    run_ok(&[
        "convert",
        "--layout",
        "aliccp",
        "--input",
        &p("eval.csv"),
        "--out",
        &p("converted"),
    ]);
    run_ok(&[
        "eval",
        "--model",
        &p("model.safetensors"),
        "--data",
        &p("converted"),
        "--report",
        &p("v.json"),
    ]);
    let v = f.json("v.json");
    assert_eq!(auc(&v), auc(&m));

    // User mistakes: a clear message and a non-zero exit, no panic.
    for (args, needle) in [
        (
            vec!["train", "--train", "/nonexistent/data"],
            "/nonexistent/data",
        ),
        (
            vec![
                "eval",
                "--model",
                "/nonexistent/model",
                "--data",
                &p("eval"),
            ],
            "/nonexistent/model",
        ),
        (
            vec![
                "score",
                "--model",
                &p("scores.csv"),
                "--data",
                &p("eval"),
                "--out",
                &p("x.csv"),
            ],
            "safetensors",
        ),
        (
            vec!["train", "--train", &p("train"), "--resume"],
            "--checkpoint-dir",
        ),
    ] {
        fails_clearly(&args, needle);
    }
}

#[test]
fn regression_trains_resumes_exports_and_scores_its_predicted_value() {
    let f = Fixture::new("regression");
    let p = |n: &str| f.path(n);
    let train = f.dataset("train", 3000, &["--play-time", "--max-vocab", "200"]);
    let eval = f.dataset(
        "eval",
        1000,
        &["--play-time", "--seed", "2", "--max-vocab", "200"],
    );
    let config = f.config(
        "chained.json",
        r#"{"model": {"kind": "resflow"}, "residual": {"hidden": false},
            "regression": {"target": "play_time", "percentiles": [25, 50, 75]},
            "embedding_dim": 8, "hidden": [16, 8], "batch_norm": "none", "batch_size": 256}"#,
    );
    let run = [
        "train",
        "--train",
        &train,
        "--eval",
        &eval,
        "--config",
        &config,
        "--threads",
        "2",
    ];
    let ckpt = p("ckpt");
    let first = run_ok(&join(
        &run,
        &[
            "--epochs",
            "1",
            "--checkpoint-dir",
            &ckpt,
            "--eval-every",
            "5",
            "--report",
            &p("first.json"),
        ],
    ));
    assert!(
        first.contains("evaluation at step 5") && first.contains("play_time MSE"),
        "{first}"
    );
    let model = p("model.safetensors");
    run_ok(&join(
        &run,
        &[
            "--epochs",
            "2",
            "--checkpoint-dir",
            &ckpt,
            "--resume",
            "--out",
            &model,
            "--report",
            &p("second.json"),
        ],
    ));
    let (first, second) = (f.json("first.json"), f.json("second.json"));
    for r in [&first, &second] {
        assert!(r.get("eval").is_none() && r["train"]["steps"] == 12, "{r}");
        assert_eq!(r["regression"]["rows"], 1000);
        let heads = r["regression"]["thresholds"].as_array().unwrap();
        assert_eq!(heads.len(), 3);
        assert!(heads.iter().all(|h| h["auc"].is_number()), "{r}");
    }
    let mse = |r: &serde_json::Value| r["regression"]["mse"].as_f64().unwrap();
    assert_ne!(mse(&first), mse(&second), "the resumed run trained on");

    // The model file, the checkpoint and an export of it evaluate as the trainer did.
    run_ok(&[
        "export",
        "--checkpoint",
        &ckpt,
        "--out",
        &p("exported.safetensors"),
    ]);
    let trained = resflow::Model::load(std::path::Path::new(&model)).unwrap();
    assert!(trained == resflow::Model::load(&f.dir.join("exported.safetensors")).unwrap());
    for (source, name) in [(&model, "m.json"), (&ckpt, "c.json")] {
        run_ok(&[
            "eval",
            "--model",
            source,
            "--data",
            &eval,
            "--report",
            &p(name),
        ]);
        let served = mse(&f.json(name));
        let gap = (served - mse(&second)).abs() / mse(&second);
        assert!(
            gap <= 10.0 * tensor::tolerance::MODEL as f64,
            "{served} vs {}",
            mse(&second)
        );
    }

    // Scoring: one probability per threshold head, the fused value the trainer's
    // decoded prediction of the same row.
    run_ok(&[
        "score",
        "--model",
        &model,
        "--data",
        &eval,
        "--out",
        &p("scores.csv"),
    ]);
    let scores = std::fs::read_to_string(f.dir.join("scores.csv")).unwrap();
    let mut lines = scores.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 2 + 3 + 1);
    assert!(
        header[2].starts_with("p_play_time>") && header[5] == "fused",
        "{header:?}"
    );
    let fused: Vec<f32> = lines
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let data = shards::Dataset::open(std::path::Path::new(&eval)).unwrap();
    let mut trainer = resflow::Trainer::load_checkpoint(std::path::Path::new(&ckpt), 1).unwrap();
    let decoder = trained
        .config
        .regression
        .as_ref()
        .unwrap()
        .decoder()
        .unwrap();
    let mut decoded = Vec::new();
    trainer
        .predict(&data, |q, _| {
            decoded.extend(
                q.chunks_exact(3)
                    .map(|row| decoder.value_from_probabilities(row).unwrap()),
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(decoded.len(), fused.len());
    for (r, (a, b)) in decoded.iter().zip(&fused).enumerate() {
        assert!(
            (a - b).abs() <= 10.0 * tensor::tolerance::MODEL * a.abs().max(1.0),
            "row {r}: trained {a}, served {b}"
        );
    }

    // Direct regression and independent towers train through the same command.
    for (name, json) in [
        (
            "direct.json",
            r#"{"model": {"kind": "independent"}, "regression": {"target": "play_time", "form": "direct"},
                "embedding_dim": 8, "hidden": [16], "batch_norm": "none", "batch_size": 256}"#,
        ),
        (
            "towers.json",
            r#"{"model": {"kind": "independent"}, "regression": {"target": "play_time", "thresholds": [10, 40, 120]},
                "embedding_dim": 8, "hidden": [16], "batch_norm": "none", "batch_size": 256}"#,
        ),
    ] {
        let c = f.config(name, json);
        let text = run_ok(&[
            "train",
            "--train",
            &train,
            "--eval",
            &eval,
            "--config",
            &c,
            "--threads",
            "1",
            "--epochs",
            "1",
        ]);
        assert!(
            text.contains("final evaluation (1000 rows): play_time MSE"),
            "{text}"
        );
    }

    // Mistakes: the target kind must match the configuration, in the option's words.
    let ranking = f.dataset("ranking", 500, &[]);
    fails_clearly(
        &["train", "--train", &ranking, "--config", &config],
        "--train",
    );
    fails_clearly(
        &["train", "--train", &ranking, "--config", &config],
        "\"play_time\" is not a column",
    );
    fails_clearly(
        &["train", "--train", &train],
        "continuous target, not 0/1 labels",
    );
    let click = f.config(
        "click.json",
        r#"{"model": {"kind": "independent"}, "regression": {"target": "click", "form": "direct"}}"#,
    );
    fails_clearly(
        &["train", "--train", &ranking, "--config", &click],
        "holds 0/1 labels",
    );
    fails_clearly(
        &[
            "train", "--train", &train, "--eval", &ranking, "--config", &config,
        ],
        "--eval",
    );
    fails_clearly(&["eval", "--model", &model, "--data", &ranking], "--data");
}

#[test]
fn compare_trains_each_model_per_seed_and_reports_them() {
    let f = Fixture::new("compare");
    let p = |n: &str| f.path(n);
    f.dataset("train", 4000, &["--seed", "1"]);
    f.dataset("eval", 2000, &["--seed", "2"]);
    f.config(
        "config.json",
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256, "model": {"kind": "ple", "levels": 1}}"#,
    );
    let text = run_ok(&[
        "compare",
        "--train",
        &p("train"),
        "--eval",
        &p("eval"),
        "--config",
        &p("config.json"),
        "--models",
        "resflow,esmm,ple",
        "--seeds",
        "2",
        "--latency-calls",
        "3",
        "--report",
        &p("report.json"),
    ]);
    for needle in [
        "resflow",
        "esmm",
        "ple",
        "click AUC",
        "WR@10 add",
        "serve ms @500",
        "tape ms @500",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let report = f.json("report.json");
    let models = report["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["resflow", "esmm", "ple"]);
    assert_eq!(report["seeds"].as_array().unwrap().len(), 2);
    for m in models {
        // The shared settings reach every model; each keeps its own kind.
        assert_eq!(m["config"]["embedding_dim"], 8);
        assert_eq!(m["config"]["model"]["kind"], m["model"]);
        // The configuration's own model keeps its sizes; the others use their defaults.
        if m["model"] == "ple" {
            assert_eq!(m["config"]["model"]["levels"], 1);
        }
        for t in m["tasks"].as_array().unwrap() {
            let auc = &t["auc"];
            assert_eq!(auc["values"].as_array().unwrap().len(), 2);
            let mean = auc["mean"].as_f64().unwrap();
            assert!(mean > 0.5 && mean < 1.0, "{m}");
        }
        assert!(m["dense_parameters"].as_u64().unwrap() > 0);
        assert!(m["score_500_p50_ms"]["mean"].as_f64().unwrap() > 0.0);
        assert!(m["tape_500_p50_ms"]["mean"].as_f64().unwrap() > 0.0);
    }

    // Three tasks on the built-in funnel: every kind but ESMM by default.
    let out = resflow()
        .args([
            "compare",
            "--tasks",
            "3",
            "--rows",
            "1000",
            "--seeds",
            "1",
            "--latency-calls",
            "2",
        ])
        .output()
        .unwrap();
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ESMM is defined for two tasks"), "{err}");
    assert!(
        text.contains("cart AUC") && text.contains("order GAUC"),
        "{text}"
    );
    assert!(text.contains("aitm") && !text.contains("esmm"), "{text}");

    for (args, needle) in [
        (
            vec![
                "compare", "--tasks", "3", "--models", "esmm", "--rows", "1000",
            ],
            "2 tasks, got 3",
        ),
        (vec!["compare", "--tasks", "4"], "2 or 3 tasks"),
        (vec!["compare", "--models", "resflow,moe"], "unknown model"),
        (vec!["compare", "--seeds", "0"], "--seeds"),
        (vec!["compare", "--train", &p("train")], "--eval"),
    ] {
        fails_clearly(&args, needle);
    }
}

/// `a` then `b`.
fn join<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}

#[test]
fn cli_bad_kernel_is_an_error_for_every_command() {
    let Small { data, model, .. } = small();
    let f = Fixture::new("kernel");
    let out_csv = f.path("s.csv");
    for args in [
        vec!["train", "--train", &data],
        vec!["eval", "--model", &model, "--data", &data],
        vec![
            "score", "--model", &model, "--data", &data, "--out", &out_csv,
        ],
    ] {
        for kernel in ["bogus", "avx512"] {
            if kernel == "avx512" && tensor::Tier::Avx512.is_supported() {
                continue;
            }
            let out = resflow()
                .args(&args)
                .env("RESFLOW_KERNEL", kernel)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success()
                    && err.contains("RESFLOW_KERNEL")
                    && !err.contains("panicked"),
                "{args:?} {kernel}: {err}"
            );
        }
    }
}

#[test]
fn cli_closed_stdout_is_a_quiet_stop_not_a_panic() {
    let Small { data, model, .. } = small();
    // The reader is gone before the command starts, so its first line meets a closed pipe
    // (dropping the reader after spawning raced with the command, which could write all
    // of its lines into the pipe's buffer first and rightly exit 0).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = resflow()
        .args(["eval", "--model", model, "--data", data])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(141), "{err}");
}

#[test]
fn cli_outputs_are_validated_before_any_work() {
    let setup = small();
    let Small { data, model, .. } = setup;
    let f = Fixture::new("outputs");
    let p = |n: &str| f.path(n);
    let dir = &f.dir;
    let shard = format!("{data}/shard-00000.rfs");
    let (shard_bytes, model_bytes) = (
        std::fs::read(&shard).unwrap(),
        std::fs::read(model).unwrap(),
    );
    let score = |out: &str| {
        vec!["score", "--model", &model, "--data", &data, "--out", out]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let args = score(&shard);
    fails_clearly(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "inside --data",
    );
    let args = score(model);
    fails_clearly(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "same path as --model",
    );
    let train = setup.train();
    fails_clearly(
        &join(&train, &["--out", &p("x"), "--report", &p("x")]),
        "--report",
    );
    fails_clearly(&join(&train, &["--out", &shard]), "inside --train");
    fails_clearly(&join(&train, &["--out", &p("")]), "is a directory");
    std::fs::write(p("afile"), b"").unwrap();
    fails_clearly(
        &join(&train, &["--checkpoint-dir", &p("afile")]),
        "existing file",
    );
    fails_clearly(
        &join(&train, &["--out", &p("no/such/dir/m.safetensors")]),
        "does not exist",
    );
    // The evaluation set is checked against the model before training.
    let three = f.dataset("three", 500, &["--tasks", "3"]);
    fails_clearly(&join(&train, &["--eval", &three]), "--eval");
    let empty = f.dataset("empty", 0, &[]);
    fails_clearly(&join(&train, &["--eval", &empty]), "no rows");
    assert_eq!(std::fs::read(&shard).unwrap(), shard_bytes);
    assert_eq!(std::fs::read(model).unwrap(), model_bytes);
    // Scores are written whole under the real name, nothing else is left.
    run_ok(
        &score(&p("s.csv"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        std::fs::read_to_string(p("s.csv")).unwrap().lines().count(),
        2001
    );
    assert!(
        !std::fs::read_dir(dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-"))
    );
}

#[test]
fn cli_training_mistakes_are_errors_not_silent() {
    let setup = small();
    let Small { data, config, .. } = setup;
    let f = Fixture::new("mistakes");
    let p = |n: &str| f.path(n);
    let g0 = f.dataset("g0", 0, &[]);
    fails_clearly(&["train", "--train", &g0, "--out", &p("m0")], "no rows");
    assert!(!f.dir.join("m0").exists());
    let train = setup.train();
    fails_clearly(
        &join(&train, &["--checkpoint-dir", &p("ck"), "--resume"]),
        "holds no checkpoint",
    );
    fails_clearly(
        &join(
            &train,
            &["--checkpoint-dir", &p("ck"), "--checkpoint-every", "0"],
        ),
        "at least 1",
    );
    fails_clearly(
        &join(&train, &["--checkpoint-every", "5"]),
        "needs --checkpoint-dir",
    );
    run_ok(&join(&train, &["--checkpoint-dir", &p("ck")]));
    f.config(
        "other.json",
        r#"{"embedding_dim": 4, "hidden": [16], "batch_size": 256}"#,
    );
    let resume = [
        "train",
        "--train",
        data,
        "--threads",
        "1",
        "--checkpoint-dir",
        &p("ck"),
        "--resume",
    ];
    let e = resflow()
        .args(resume)
        .args(["--config", &p("other.json"), "--epochs", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(
        !e.status.success() && err.contains("hidden: [8] vs [16]"),
        "{err}"
    );
    // More epochs with the same configuration is a resume, not a difference.
    run_ok(
        &resume
            .iter()
            .copied()
            .chain(["--config", config, "--epochs", "2"])
            .collect::<Vec<_>>(),
    );
    for (json, needle) in [
        (r#"{"optimizer": {"epsilon": -1}}"#, "epsilon"),
        (r#"{"optimizer": {"learning_rate": 1e30}}"#, "learning_rate"),
        (r#"{"request_fields": ["nope"]}"#, "request_fields"),
        (r#"{"hidden": [65536, 65536]}"#, "GiB"),
    ] {
        let bad = f.config("bad.json", json);
        fails_clearly(&["train", "--train", data, "--config", &bad], needle);
    }
    let out = resflow()
        .args([
            "train",
            "--train",
            data,
            "--config",
            config,
            "--threads",
            "64",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("more than the"),
        "{err}"
    );
}

#[test]
fn cli_datasets_are_exactly_their_manifest() {
    let f = Fixture::new("datasets");
    let p = |n: &str| f.path(n);
    let dir = &f.dir;
    std::fs::create_dir_all(dir.join("notes")).unwrap();
    std::fs::write(dir.join("notes/a.txt"), b"mine").unwrap();
    fails_clearly(&["gen", "--rows", "10", "--out", &p("notes")], "not empty");
    f.dataset("d", 1000, &["--csv", &p("d.csv")]);
    fails_clearly(
        &[
            "convert",
            "--layout",
            "aliccp",
            "--input",
            &p("d.csv"),
            "--schema",
            &p("d.csv"),
            "--out",
            &p("c"),
        ],
        "--schema is read only with --layout csv",
    );
    fails_clearly(
        &[
            "convert",
            "--layout",
            "aliccp",
            "--input",
            &p("d.csv"),
            "--rows-per-shard",
            "0",
            "--out",
            &p("c"),
        ],
        "at least 1",
    );
    std::fs::remove_file(dir.join("d/shard-00000.rfs")).unwrap();
    fails_clearly(&["train", "--train", &p("d")], "missing");
    std::fs::remove_file(dir.join("d/manifest.json")).unwrap();
    fails_clearly(&["train", "--train", &p("d")], "resflow manifest --data");
    // The remedy records what is there (here: nothing), and says so.
    let text = run_ok(&["manifest", "--data", &p("d")]);
    assert!(text.contains("0 shards"), "{text}");
}
