//! The helpers of the tests that run `resflow train --distributed` (tests/distributed.rs,
//! tests/shard_tables.rs): the binary, a scratch directory, generated data, a small model's
//! configuration, and the launcher.
#![allow(dead_code)] // each test file uses its own part of them

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `resflow` binary under test.
pub fn resflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resflow"))
}

/// A new, empty scratch directory for the test `name` of this process.
pub fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("resflow-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Standard output then standard error.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// `out`, after checking that the command succeeded.
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// `resflow gen` of `rows` rows with sampling seed `seed` into `dir`.
pub fn generate(dir: &Path, rows: usize, seed: u64) {
    ok(resflow()
        .args([
            "gen",
            "--rows",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap());
}

/// A small model's configuration in `dir` (two epochs of batches of 256), with lazy
/// (`sparse`) or dense Adam on the tables.
pub fn config(dir: &Path, sparse: bool) -> PathBuf {
    let path = dir.join(format!("config-{sparse}.json"));
    std::fs::write(
        &path,
        format!(
            r#"{{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 256, "epochs": 2,
                "optimizer": {{"sparse_embeddings": {sparse}}}}}"#
        ),
    )
    .unwrap();
    path
}

/// `mpirun -np <np>`, with a time limit on the whole run.
pub fn mpirun(np: usize) -> Command {
    let mut c = Command::new(distributed::find_mpirun().expect("mpirun"));
    c.args(["-np", &np.to_string()])
        .env("MPIEXEC_TIMEOUT", "300");
    c
}
