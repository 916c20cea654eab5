//! Builds the C++ examples with g++ against the static and the shared library, runs them,
//! and checks what they print: the host's scores against the Rust [`Scorer`] within 1e-6,
//! every error path's status and message, and both again under AddressSanitizer and
//! UndefinedBehaviorSanitizer. Skips (saying so) when g++ is absent.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Link, RequestData, build_cpp, have_gxx, run, scratch, test_model};
use resflow::Scorer;

/// Largest difference allowed between the C++ host's scores and the Rust scorer's.
const MATCH: f32 = 1e-6;

/// Runs the host in `--dump` mode and compares every score with the Rust scorer.
fn compare_host(host: &Path, model_path: &Path, scorer: &Scorer, env: &[(&str, &str)]) {
    for (n, seed) in [(1, 3), (37, 5), (500, 11)] {
        let out = run(Command::new(host)
            .arg(model_path)
            .args([
                "--dump",
                "--candidates",
                &n.to_string(),
                "--seed",
                &seed.to_string(),
            ])
            .envs(env.iter().copied()));
        let (probs, fused) = common::score_request(&RequestData::random(scorer, n, seed), scorer);
        let tasks = scorer.tasks();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), n, "one line per candidate:\n{out}");
        for (r, line) in lines.iter().enumerate() {
            let v: Vec<f32> = line
                .split_whitespace()
                .skip(1)
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(v.len(), 1 + tasks);
            assert!(
                (v[0] - fused[r]).abs() <= MATCH,
                "candidate {r}: fused {} vs {}",
                v[0],
                fused[r]
            );
            for t in 0..tasks {
                let want = probs[r * tasks + t];
                assert!(
                    (v[1 + t] - want).abs() <= MATCH,
                    "candidate {r} task {t}: {} vs {want}",
                    v[1 + t]
                );
            }
        }
    }
}

fn exported_model(dir: &Path) -> (std::path::PathBuf, Scorer) {
    let model = test_model(7);
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    (path, Scorer::new(model).unwrap())
}

/// A model trained here, on a small synthetic funnel in the Ali-CCP layout, with the user
/// and scenario fields as request-level fields.
fn trained_model(dir: &Path) -> (std::path::PathBuf, Scorer) {
    let data = dir.join("data");
    let synth = shards::synth::SynthConfig {
        rows: 6_000,
        max_vocab: 200,
        ..Default::default()
    };
    shards::synth::generate(&synth, &data).unwrap();
    let ds = shards::Dataset::open(&data).unwrap();
    let mut config = resflow::ModelConfig::from_json(
        r#"{"embedding_dim": 8, "hidden": [16, 8], "batch_size": 256, "request_fields": ["101", "121", "301"]}"#,
    )
    .unwrap();
    config.optimizer.learning_rate = 3e-3;
    let mut trainer = resflow::Trainer::new(config, resflow::layout_of(ds.schema()), 2).unwrap();
    trainer.fit(&ds, 1, |_, _| Ok(())).unwrap();
    let model = trainer.export().unwrap();
    let path = dir.join("trained.safetensors");
    model.save(&path).unwrap();
    (path, Scorer::new(model).unwrap())
}

#[test]
fn cpp_host_matches_rust_scorer_on_a_trained_model() {
    if !have_gxx() {
        return;
    }
    let dir = scratch("cpp_trained");
    let (model_path, scorer) = trained_model(&dir);
    let host = dir.join("resflow_host");
    build_cpp("resflow_host.cpp", &host, Link::Static, &["-O2"]);
    compare_host(&host, &model_path, &scorer, &[]);
}

#[test]
fn cpp_host_matches_rust_scorer() {
    if !have_gxx() {
        return;
    }
    let dir = scratch("cpp_host");
    let (model_path, scorer) = exported_model(&dir);
    for link in [Link::Static, Link::Shared] {
        let host = dir.join(format!("resflow_host_{link:?}"));
        build_cpp("resflow_host.cpp", &host, link, &["-O2"]);
        compare_host(&host, &model_path, &scorer, &[]);
    }
    // The human-readable mode prints the top-K.
    let host = dir.join("resflow_host_Static");
    let out = run(Command::new(&host).arg(&model_path).args(["--top", "5"]));
    assert!(out.starts_with("top 5 of 100 candidates"), "{out}");
    assert_eq!(out.lines().count(), 7, "{out}");
    // A short benchmark run exercises the multi-threaded path.
    let out = run(Command::new(&host).arg(&model_path).args([
        "--bench",
        "--calls",
        "50",
        "--sizes",
        "1,20",
        "--threads",
        "2",
    ]));
    assert!(out.contains("2 thread(s) sharing one model"), "{out}");
}

#[test]
fn plain_c_example() {
    if !have_gxx() {
        return;
    }
    let dir = scratch("c_minimal");
    let (model_path, _) = exported_model(&dir);
    let exe = dir.join("minimal");
    build_cpp("minimal.c", &exe, Link::Static, &["-O2"]);
    let out = run(Command::new(&exe).arg(&model_path));
    assert!(out.contains("3 tasks, first task click"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("fused")).count(),
        4,
        "{out}"
    );
}

#[test]
fn cpp_error_paths() {
    if !have_gxx() {
        return;
    }
    let dir = scratch("cpp_errors");
    let (model_path, _) = exported_model(&dir);
    let exe = dir.join("error_paths");
    build_cpp("error_paths.cpp", &exe, Link::Static, &["-O1", "-g"]);
    let out = run(Command::new(&exe).arg(&model_path).arg(&dir));
    assert!(out.contains("ok: 0 failure(s)"), "{out}");
    assert!(!out.contains("FAIL "), "{out}");
}

/// AddressSanitizer and UndefinedBehaviorSanitizer on the C++ side (the Rust library is
/// linked as built). Leak detection stays on: every handle must be freed.
#[test]
fn cpp_under_sanitizers() {
    if !have_gxx() {
        return;
    }
    let dir = scratch("cpp_sanitizers");
    let (model_path, scorer) = exported_model(&dir);
    let flags = [
        "-O1",
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ];
    let env = [
        ("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
        ("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
    ];
    let errors = dir.join("error_paths_asan");
    build_cpp("error_paths.cpp", &errors, Link::Static, &flags);
    let out = run(Command::new(&errors)
        .arg(&model_path)
        .arg(&dir)
        .envs(env.iter().copied()));
    assert!(out.contains("ok: 0 failure(s)"), "{out}");
    let host = dir.join("resflow_host_asan");
    build_cpp("resflow_host.cpp", &host, Link::Static, &flags);
    compare_host(&host, &model_path, &scorer, &env);
    run(Command::new(&host)
        .arg(&model_path)
        .args([
            "--bench",
            "--calls",
            "20",
            "--sizes",
            "1,20",
            "--threads",
            "2",
        ])
        .envs(env.iter().copied()));
}
