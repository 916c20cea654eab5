//! Replicated training over MPI against one process: `mpirun -np 2` ranks with one worker
//! thread each take the same steps as one process with two workers, bit for bit (losses,
//! parameters, running statistics, evaluation).
//!
//! Each test here launches this test binary again under `mpirun`, running one of the
//! `rank_*` functions (ignored in a plain `cargo test`: they are the ranks' side), and
//! compares what the ranks wrote with what one process computes.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::Command;

use distributed::Cluster;
use resflow::{ModelConfig, Trainer};
use shards::Dataset;
use shards::synth::{SynthConfig, generate};

const DIR_VAR: &str = "RESFLOW_MPI_TEST_DIR";

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distributed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn make_data(dir: &Path, rows: usize, seed: u64) {
    generate(
        &SynthConfig {
            rows,
            seed,
            max_vocab: 300,
            rows_per_shard: 2_000,
            ..SynthConfig::default()
        },
        dir,
    )
    .unwrap();
}

/// The configurations compared: the authors' frozen BatchNorm, and real batch statistics
/// (whose running averages combine every worker's slice), with an odd batch size whose
/// last batch is short.
fn configs() -> Vec<ModelConfig> {
    let mut a =
        ModelConfig::from_json(r#"{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 512}"#)
            .unwrap();
    a.optimizer.learning_rate = 3e-3;
    let mut b = ModelConfig::from_json(
        r#"{"embedding_dim": 4, "hidden": [16], "batch_size": 301, "batch_norm": "batch"}"#,
    )
    .unwrap();
    b.optimizer.learning_rate = 3e-3;
    vec![a, b]
}

/// Everything a run produces, as bits: each step's losses, then every parameter, running
/// statistic and evaluation probability, and the AUCs.
fn fingerprint(t: &mut Trainer, train: &Dataset, eval: &Dataset, epochs: usize) -> Vec<u64> {
    let mut out = vec![];
    t.fit(train, epochs, |_, s| {
        out.push(s.rows as u64);
        out.extend(s.losses.iter().map(|l| l.to_bits()));
        Ok(())
    })
    .unwrap();
    for p in &t.store.dense {
        out.extend(p.value.as_slice().iter().map(|x| x.to_bits() as u64));
    }
    for p in &t.store.tables {
        out.extend(p.value.as_slice().iter().map(|x| x.to_bits() as u64));
    }
    for s in &t.network.stats {
        out.extend(s.iter().map(|x| x.to_bits() as u64));
    }
    t.predict(eval, |probs, _| {
        out.extend(probs.iter().map(|x| x.to_bits() as u64));
        Ok(())
    })
    .unwrap();
    let report = t.evaluate(eval, &t.eval_config()).unwrap();
    out.extend(
        report
            .tasks
            .iter()
            .map(|r| r.auc.unwrap_or(f64::NAN).to_bits()),
    );
    out
}

fn write_bits(path: &Path, bits: &[u64]) {
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_bits(path: &Path) -> Vec<u64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Runs `mpirun -np ranks` on this test binary's `test` (a `rank_*` function) with `dir`.
fn launch(ranks: usize, test: &str, dir: &Path) {
    let mpirun = distributed::find_mpirun().expect("the MPI tests need mpirun");
    let out = Command::new(mpirun)
        .args(["-np", &ranks.to_string()])
        .arg(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        // Hydra ends the whole run after this many seconds: a hang fails the test.
        .env("MPIEXEC_TIMEOUT", "300")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mpirun {test} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_ranks_of_one_thread_equal_one_process_of_two_workers() {
    let dir = temp("replicated");
    make_data(&dir.join("train"), 5_000, 1);
    make_data(&dir.join("eval"), 1_500, 2);
    launch(2, "rank_replicated", &dir);
    let train = Dataset::open(&dir.join("train")).unwrap();
    let eval = Dataset::open(&dir.join("eval")).unwrap();
    for (k, c) in configs().into_iter().enumerate() {
        let mut t = Trainer::new(c, resflow::layout_of(train.schema()), 2).unwrap();
        let one = fingerprint(&mut t, &train, &eval, 2);
        for rank in 0..2 {
            let theirs = read_bits(&dir.join(format!("config{k}-rank{rank}.bits")));
            assert_eq!(theirs.len(), one.len(), "config {k} rank {rank}");
            let first = theirs.iter().zip(&one).position(|(a, b)| a != b);
            assert_eq!(
                first, None,
                "config {k}: rank {rank} differs at value {first:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "one rank of the mpirun test above"]
fn rank_replicated() {
    let dir = PathBuf::from(std::env::var_os(DIR_VAR).expect("started by the test above"));
    let cluster = Cluster::join().unwrap();
    let train = Dataset::open(&dir.join("train")).unwrap();
    let eval = Dataset::open(&dir.join("eval")).unwrap();
    for (k, c) in configs().into_iter().enumerate() {
        let mut t = Trainer::new(c, resflow::layout_of(train.schema()), 1).unwrap();
        cluster.attach(&mut t, train.rows(), false, None).unwrap();
        let bits = fingerprint(&mut t, &train, &eval, 2);
        write_bits(
            &dir.join(format!("config{k}-rank{}.bits", cluster.rank())),
            &bits,
        );
    }
}

/// Epochs of the checkpointed runs (long enough to be killed in the middle).
const KILL_EPOCHS: usize = 4;

fn kill_config() -> ModelConfig {
    let mut c =
        ModelConfig::from_json(r#"{"embedding_dim": 8, "hidden": [32, 16], "batch_size": 256}"#)
            .unwrap();
    c.optimizer.learning_rate = 3e-3;
    c
}

/// Parameters and running statistics, as bits.
fn state_bits(t: &Trainer) -> Vec<u64> {
    let mut out: Vec<u64> = vec![t.step];
    for p in &t.store.dense {
        out.extend(p.value.as_slice().iter().map(|x| x.to_bits() as u64));
    }
    for p in &t.store.tables {
        out.extend(p.value.as_slice().iter().map(|x| x.to_bits() as u64));
    }
    for s in &t.network.stats {
        out.extend(s.iter().map(|x| x.to_bits() as u64));
    }
    out
}

#[test]
fn a_rank_killed_mid_run_stops_the_others_and_the_run_resumes_exactly() {
    let dir = temp("kill");
    make_data(&dir.join("train"), 24_000, 3);
    let ckpt = dir.join("ckpt");
    let checkpoint = ckpt.join(resflow::CHECKPOINT_FILE);

    // Each rank's shell writes its pid, then becomes the rank.
    let mpirun = distributed::find_mpirun().unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "echo $$ > '{}'/pid.$PMI_RANK; exec '{}' rank_checkpointed --exact --ignored \
         --nocapture --test-threads=1",
        dir.display(),
        exe.display()
    );
    let mut run = Command::new(&mpirun)
        .args(["-np", "2", "sh", "-c", &script])
        .env(DIR_VAR, &dir)
        .env("MPIEXEC_TIMEOUT", "300")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once rank 0 has written a checkpoint, training is under way: kill rank 1.
    let start = std::time::Instant::now();
    while !(checkpoint.exists() && dir.join("pid.1").exists()) {
        assert!(start.elapsed().as_secs() < 120, "no checkpoint after 120 s");
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = std::fs::read_to_string(dir.join("pid.1")).unwrap();
    let killed = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The other rank must not wait forever for the dead one.
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        if start.elapsed().as_secs() > 60 {
            run.kill().unwrap();
            panic!("rank 0 still runs 60 s after rank 1 was killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = run.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !status.success(),
        "the killed run reported success:\n{text}"
    );
    assert!(
        text.contains("BAD TERMINATION") && text.contains("signal 9"),
        "the launcher names the killed rank:\n{text}"
    );
    assert!(
        !dir.join("done.0").exists(),
        "rank 0 finished although rank 1 was killed"
    );
    // The checkpoint on disk is whole (it loads, checksums and all) and from mid-run.
    let saved = Trainer::load_checkpoint(&ckpt, 1).unwrap();
    let train = Dataset::open(&dir.join("train")).unwrap();
    let steps_per_epoch = train.rows().div_ceil(kill_config().batch_size) as u64;
    assert!(saved.step > 0 && saved.step < KILL_EPOCHS as u64 * steps_per_epoch);
    drop(saved);

    // Resume with the same two ranks: the end state is the uninterrupted one's.
    launch(2, "rank_checkpointed", &dir);
    let mut t = Trainer::new(kill_config(), resflow::layout_of(train.schema()), 2).unwrap();
    t.fit(&train, KILL_EPOCHS, |_, _| Ok(())).unwrap();
    let expected = state_bits(&t);
    for rank in 0..2 {
        let theirs = read_bits(&dir.join(format!("done.{rank}")));
        assert_eq!(theirs.len(), expected.len());
        assert!(theirs == expected, "rank {rank} resumed to another state");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "one rank of the mpirun test above"]
fn rank_checkpointed() {
    let dir = PathBuf::from(std::env::var_os(DIR_VAR).expect("started by the test above"));
    let cluster = Cluster::join().unwrap();
    let train = Dataset::open(&dir.join("train")).unwrap();
    let ckpt = dir.join("ckpt");
    let mut t = if ckpt.join(resflow::CHECKPOINT_FILE).exists() {
        Trainer::load_checkpoint(&ckpt, 1).unwrap()
    } else {
        Trainer::new(kill_config(), resflow::layout_of(train.schema()), 1).unwrap()
    };
    cluster.attach(&mut t, train.rows(), false, None).unwrap();
    t.fit(&train, KILL_EPOCHS, |t, _| {
        // Rank 0 writes (atomically) for every rank: the replicas are identical.
        if t.rank().0 == 0 && t.step % 3 == 0 {
            t.save_checkpoint(&ckpt)?;
        }
        Ok(())
    })
    .unwrap();
    write_bits(
        &dir.join(format!("done.{}", cluster.rank())),
        &state_bits(&t),
    );
}
