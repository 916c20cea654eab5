//! `resflow train --distributed --shard-tables` as a user runs it (2 ranks x 1 thread):
//! the model, evaluation and report equal the replicated run's, byte for byte, while each
//! rank holds about half the tables' bytes at most, from its start on; a rank
//! killed in the middle of training ends the run with the launcher's message and leaves a
//! whole checkpoint, which resumes (with the same ranks) to the uninterrupted run's model;
//! another number of ranks, a single process and `export --checkpoint` are refused with
//! the number to use.
#![cfg(feature = "mpi")]

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mpi::{config, generate, mpirun, ok, resflow, temp, text};

/// `train` on `dir`'s data writing `<name>.safetensors`, `<name>.json`, `<name>-ckpt`.
fn train_args(dir: &Path, cfg: &Path, name: &str) -> Vec<OsString> {
    let p = |s: String| dir.join(s).into_os_string();
    vec![
        "train".into(),
        "--train".into(),
        p("train".into()),
        "--eval".into(),
        p("eval".into()),
        "--config".into(),
        cfg.as_os_str().to_owned(),
        "--out".into(),
        p(format!("{name}.safetensors")),
        "--report".into(),
        p(format!("{name}.json")),
        "--checkpoint-dir".into(),
        p(format!("{name}-ckpt")),
        "--threads".into(),
        "1".into(),
        "--distributed".into(),
    ]
}

fn eval_of(path: &Path) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(path).unwrap()).unwrap()["eval"]
        .clone()
}

#[test]
fn sharded_tables_train_the_replicated_model() {
    let dir = temp("equal");
    generate(&dir.join("train"), 6_000, 1);
    generate(&dir.join("eval"), 2_000, 2);
    // Lazy Adam (the rows seen) and dense Adam (every row, every step).
    for sparse in [true, false] {
        let cfg = config(&dir, sparse);
        let (rep, sh) = (format!("rep-{sparse}"), format!("sh-{sparse}"));
        ok(mpirun(2)
            .arg(env!("CARGO_BIN_EXE_resflow"))
            .args(train_args(&dir, &cfg, &rep))
            .output()
            .unwrap());
        let out = ok(mpirun(2)
            .arg(env!("CARGO_BIN_EXE_resflow"))
            .args(train_args(&dir, &cfg, &sh))
            .arg("--shard-tables")
            .output()
            .unwrap());
        let t = text(&out);
        assert_eq!(
            t.matches("model written").count(),
            1,
            "rank 0 alone writes: {t}"
        );
        // Each rank stores its half of the rows and their moments only, and never held
        // more than about that, from its start through training and evaluation.
        for rank in 0..2 {
            let line = t
                .lines()
                .find(|l| l.starts_with(&format!("rank {rank} holds ")))
                .unwrap_or_else(|| panic!("no table bytes of rank {rank}: {t}"));
            let bytes: Vec<f64> = line
                .split(' ')
                .skip(2)
                .filter_map(|w| w.trim_end_matches(')').parse().ok())
                .collect();
            assert_eq!(bytes.len(), 3, "{line}");
            let (held, peak, whole) = (bytes[0], bytes[1], bytes[2]);
            assert!(
                (0.4..0.6).contains(&(held / whole)),
                "rank {rank} holds {} of the tables: {line}",
                held / whole
            );
            assert!(
                peak >= held && peak / whole < 0.6,
                "rank {rank}'s peak is {} of the tables: {line}",
                peak / whole
            );
        }
        let read = |p: String| std::fs::read(dir.join(p)).unwrap();
        assert!(
            read(format!("{rep}.safetensors")) == read(format!("{sh}.safetensors")),
            "the sharded run's model differs from the replicated run's (sparse {sparse})"
        );
        assert_eq!(
            eval_of(&dir.join(format!("{rep}.json"))),
            eval_of(&dir.join(format!("{sh}.json")))
        );
        // Each rank wrote its rows of the last checkpoint; rank 0 the rest.
        let ckpt = dir.join(format!("{sh}-ckpt"));
        let shards: Vec<String> = std::fs::read_dir(&ckpt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tables-"))
            .collect();
        assert_eq!(shards.len(), 2, "one table file per rank: {shards:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_sharded_run_resumes_to_the_uninterrupted_model() {
    let dir = temp("kill");
    generate(&dir.join("train"), 24_000, 3);
    generate(&dir.join("eval"), 1_000, 4);
    let cfg = config(&dir, true);
    // The uninterrupted run.
    ok(mpirun(2)
        .arg(env!("CARGO_BIN_EXE_resflow"))
        .args(train_args(&dir, &cfg, "whole"))
        .arg("--shard-tables")
        .output()
        .unwrap());
    // The same run, rank 1 killed once a checkpoint is on disk. Each rank's shell writes its
    // pid, then becomes the rank.
    let args: Vec<String> = train_args(&dir, &cfg, "cut")
        .into_iter()
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let script = format!(
        "echo $$ > '{}'/pid.$PMI_RANK; exec '{}' {} --shard-tables --checkpoint-every 3",
        dir.display(),
        env!("CARGO_BIN_EXE_resflow"),
        args.join(" ")
    );
    let ckpt = dir.join("cut-ckpt");
    let mut run = mpirun(2)
        .args(["sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !(ckpt.join(resflow::CHECKPOINT_FILE).exists() && dir.join("pid.1").exists()) {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = std::fs::read_to_string(dir.join("pid.1")).unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        if start.elapsed().as_secs() > 60 {
            run.kill().unwrap();
            panic!("rank 0 still runs 60 s after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = run.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!status.success(), "the killed run reported success:\n{t}");
    assert!(
        t.contains("BAD TERMINATION") && t.contains("signal 9"),
        "the launcher names the killed rank:\n{t}"
    );
    assert!(
        !dir.join("cut.safetensors").exists(),
        "a model was written:\n{t}"
    );

    // Another number of ranks, or one process, is refused with the number to use.
    let resume = |np: usize| {
        let mut c = mpirun(np);
        c.arg(env!("CARGO_BIN_EXE_resflow"))
            .args(train_args(&dir, &cfg, "cut"))
            .args(["--shard-tables", "--resume"]);
        c.output().unwrap()
    };
    let one = resume(1);
    assert!(!one.status.success());
    assert!(
        text(&one).contains("sharded over 2 ranks") && text(&one).contains("mpirun -np 2"),
        "{}",
        text(&one)
    );
    let export = resflow()
        .arg("export")
        .arg("--checkpoint")
        .arg(&ckpt)
        .arg("--out")
        .arg(dir.join("x.safetensors"))
        .output()
        .unwrap();
    assert!(!export.status.success());
    assert!(
        text(&export).contains("sharded over 2 processes"),
        "{}",
        text(&export)
    );

    // Resumed with the same two ranks: the uninterrupted run's model, byte for byte.
    let out = ok(resume(2));
    assert!(text(&out).contains("resuming from"), "{}", text(&out));
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    assert!(
        read("whole.safetensors") == read("cut.safetensors"),
        "the resumed run ended with another model"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shard_tables_needs_distributed() {
    let dir = temp("needs");
    generate(&dir.join("train"), 500, 1);
    let out = resflow()
        .arg("train")
        .arg("--train")
        .arg(dir.join("train"))
        .arg("--shard-tables")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--shard-tables needs --distributed"),
        "{}",
        text(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
