//! The command line as a user runs it: kernel tier selection and the GEMM benchmark's JSON.

use std::process::Command;

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
fn bench_gemm_json_is_one_object_with_every_field() {
    let out = resflow()
        .args([
            "bench",
            "gemm",
            "--json",
            "--rounds",
            "1",
            "--round-ms",
            "1",
        ])
        .args([
            "--shape",
            "40,33,17",
            "--shape",
            "20,1,9,TN",
            "--kernel",
            "portable",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(v["kernel"], "portable");
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

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("resflow-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
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
    let dir = temp("pipeline");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    run_ok(&["gen", "--rows", "6000", "--seed", "1", "--out", &p("train")]);
    run_ok(&[
        "gen",
        "--rows",
        "3000",
        "--seed",
        "2",
        "--out",
        &p("eval"),
        "--csv",
        &p("eval.csv"),
    ]);
    std::fs::write(
        dir.join("config.json"),
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256}"#,
    )
    .unwrap();
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
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
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
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("m.json")).unwrap()).unwrap();
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("c.json")).unwrap()).unwrap();
    let auc = |v: &serde_json::Value| v["eval"]["tasks"][0]["auc"].as_f64().unwrap();
    assert!((auc(&m) - auc(&c)).abs() < 1e-6);
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
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("v.json")).unwrap()).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_trains_each_model_per_seed_and_reports_them() {
    let dir = temp("compare");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    run_ok(&["gen", "--rows", "4000", "--seed", "1", "--out", &p("train")]);
    run_ok(&["gen", "--rows", "2000", "--seed", "2", "--out", &p("eval")]);
    std::fs::write(
        dir.join("config.json"),
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256, "model": {"kind": "ple", "levels": 1}}"#,
    )
    .unwrap();
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
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
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
    std::fs::remove_dir_all(&dir).unwrap();
}
