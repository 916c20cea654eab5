//! `resflow train --distributed` as a user runs it: a clear error without the `mpi` feature,
//! outside `mpirun`, or without an `mpirun` to launch with; and with the feature, two ranks
//! of one thread writing the model one process of two threads writes, byte for byte.

mod common;

use std::path::Path;
#[cfg(feature = "mpi")]
use std::process::Command;

#[cfg(feature = "mpi")]
use common::mpi::{config, ok};
use common::mpi::{generate, resflow, temp};

#[test]
fn distributed_is_refused_clearly_without_mpi_or_a_launcher() {
    let dir = temp("refused");
    generate(&dir.join("train"), 500, 1);
    let train = |path: Option<&Path>| {
        let mut c = resflow();
        c.args(["train", "--distributed", "--threads", "1", "--train"])
            .arg(dir.join("train"));
        for v in distributed::LAUNCHED_VARS {
            c.env_remove(v);
        }
        if let Some(p) = path {
            c.env("PATH", p);
        }
        c.output().unwrap()
    };
    let out = train(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "mpi") {
        assert!(
            err.contains("not started by an MPI launcher") && err.contains("mpirun -np N"),
            "{err}"
        );
    } else {
        assert!(
            err.contains("built without MPI") && err.contains("--features mpi"),
            "{err}"
        );
    }
    // No mpirun on PATH: the message says what to install.
    let empty = dir.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = train(Some(&empty));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "mpi") {
        assert!(
            err.contains("no mpirun is on PATH") && err.contains("apt-get install mpich"),
            "{err}"
        );
    } else {
        assert!(err.contains("built without MPI"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(feature = "mpi")]
#[test]
fn two_ranks_write_the_model_two_threads_write() {
    let dir = temp("equal");
    generate(&dir.join("train"), 6_000, 1);
    generate(&dir.join("eval"), 2_000, 2);
    let cfg = config(&dir, true);
    let args = |name: &str| -> Vec<std::ffi::OsString> {
        [
            "train".into(),
            "--train".into(),
            dir.join("train").into_os_string(),
            "--eval".into(),
            dir.join("eval").into_os_string(),
            "--config".into(),
            cfg.clone().into_os_string(),
            "--out".into(),
            dir.join(format!("{name}.safetensors")).into_os_string(),
            "--report".into(),
            dir.join(format!("{name}.json")).into_os_string(),
            "--checkpoint-dir".into(),
            dir.join(format!("{name}-ckpt")).into_os_string(),
        ]
        .into()
    };
    ok(resflow()
        .args(args("one"))
        .args(["--threads", "2"])
        .output()
        .unwrap());
    let mpirun = distributed::find_mpirun().expect("mpirun");
    let out = ok(Command::new(mpirun)
        .args(["-np", "2"])
        .arg(env!("CARGO_BIN_EXE_resflow"))
        .args(args("two"))
        .args(["--distributed", "--threads", "1"])
        .env("MPIEXEC_TIMEOUT", "300")
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches("model written").count(),
        1,
        "rank 0 alone writes: {text}"
    );
    let read = |p: &str| std::fs::read(dir.join(p)).unwrap();
    assert!(
        read("one.safetensors") == read("two.safetensors"),
        "the model files differ"
    );
    assert!(
        read("one-ckpt/checkpoint.safetensors") == read("two-ckpt/checkpoint.safetensors"),
        "the checkpoints differ"
    );
    let eval = |p: &str| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&read(p)).unwrap()["eval"].clone()
    };
    assert_eq!(eval("one.json"), eval("two.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}
