//! Shared by the integration tests: the small test model, the request generator the C++
//! examples use (SplitMix64, same order), and helpers to find and run g++.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use resflow::config::TaskConfig;
use resflow::{Bag, Field, InputLayout, Model, ModelConfig, Pooling, Request, Scorer};

/// A small model with every kind of input: request-level single and multi-valued fields,
/// candidate-level single and multi-valued (mean-pooled) fields, and 3 dense features.
pub fn test_model(seed: u64) -> Model {
    test_model_of("resflow", seed)
}

/// [`test_model`] as another model kind (`"mmoe"`, `"aitm"`, ...; see `docs/models.md`).
pub fn test_model_of(kind: &str, seed: u64) -> Model {
    let field = |name: &str, vocab: u32, bag: Option<Pooling>| Field {
        name: name.into(),
        vocab,
        bag,
    };
    let layout = InputLayout {
        fields: vec![
            field("item", 200, None),
            field("user", 50, None),
            field("user_tags", 30, Some(Pooling::Sum)),
            field("category", 20, None),
            field("item_tags", 40, Some(Pooling::Mean)),
            field("scene", 4, None),
        ],
        dense: 3,
        tasks: vec!["click".into(), "conversion".into(), "purchase".into()],
    };
    let config = ModelConfig {
        embedding_dim: 8,
        hidden: vec![16, 8],
        tasks: layout
            .tasks
            .iter()
            .map(|name| TaskConfig {
                name: name.clone(),
                pos_weight: 1.0,
                loss_weight: 1.0,
            })
            .collect(),
        request_fields: vec!["user".into(), "user_tags".into(), "scene".into()],
        ..ModelConfig::default()
    }
    .with_model(kind)
    .expect("a known model kind");
    Model::random(config, layout, seed).expect("a valid random model")
}

/// SplitMix64, as in `examples/cpp/request.hpp`.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A request's owned buffers, generated exactly as `rf::RequestData::generate` does.
pub struct RequestData {
    pub n: usize,
    pub ids: Vec<u32>,
    pub bags: Vec<(Vec<u64>, Vec<u32>)>,
    pub dense: Vec<f32>,
    pub dense_stride: usize,
    pub request_ids: Vec<u32>,
    pub request_bags: Vec<(Vec<u64>, Vec<u32>)>,
}

impl RequestData {
    pub fn generate(scorer: &Scorer, n: usize, seed: u64) -> Self {
        let layout = &scorer.model().layout;
        let field = |name: &str| &layout.fields[layout.field_index(name).unwrap()];
        let split = |names: Vec<&str>| -> (Vec<u32>, Vec<u32>) {
            let single = names.iter().filter(|n| field(n).bag.is_none());
            let bags = names.iter().filter(|n| field(n).bag.is_some());
            (
                single.map(|n| field(n).vocab).collect(),
                bags.map(|n| field(n).vocab).collect(),
            )
        };
        let (req_single, req_bags) = split(scorer.request_fields());
        let (cand_single, cand_bags) = split(scorer.candidate_fields());
        let mut rng = SplitMix64(seed);
        let request_ids = req_single
            .iter()
            .map(|&v| (rng.next() % v as u64) as u32)
            .collect();
        let request_bags = req_bags
            .iter()
            .map(|&v| {
                let len = 1 + rng.next() % 3;
                let ids = (0..len).map(|_| (rng.next() % v as u64) as u32).collect();
                (vec![0, len], ids)
            })
            .collect();
        let mut ids = Vec::new();
        for _ in 0..n {
            for &v in &cand_single {
                ids.push((rng.next() % v as u64) as u32);
            }
        }
        let bags = cand_bags
            .iter()
            .map(|&v| {
                let (mut offsets, mut ids) = (vec![0u64], vec![]);
                for _ in 0..n {
                    for _ in 0..rng.next() % 4 {
                        ids.push((rng.next() % v as u64) as u32);
                    }
                    offsets.push(ids.len() as u64);
                }
                (offsets, ids)
            })
            .collect();
        let d = layout.dense;
        let dense_stride = d + 3;
        let mut dense = vec![0.0f32; n * dense_stride];
        for r in 0..n {
            for j in 0..d {
                dense[r * dense_stride + j] =
                    ((rng.next() >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32;
            }
        }
        Self {
            n,
            ids,
            bags,
            dense,
            dense_stride,
            request_ids,
            request_bags,
        }
    }

    /// Scores the request with the Rust [`Scorer`]: (probabilities, fused scores).
    pub fn score(&self, scorer: &Scorer) -> (Vec<f32>, Vec<f32>) {
        let bags: Vec<Bag> = self
            .bags
            .iter()
            .map(|(o, i)| Bag { offsets: o, ids: i })
            .collect();
        let rbags: Vec<Bag> = self
            .request_bags
            .iter()
            .map(|(o, i)| Bag { offsets: o, ids: i })
            .collect();
        let req = Request {
            candidates: self.n,
            ids: &self.ids,
            bags: &bags,
            dense: &self.dense,
            dense_stride: self.dense_stride,
            request_ids: &self.request_ids,
            request_bags: &rbags,
        };
        let mut ws = scorer.workspace(self.n);
        let (mut probs, mut fused) = (vec![0.0; self.n * scorer.tasks()], vec![0.0; self.n]);
        scorer.score(&mut ws, &req, &mut probs, &mut fused).unwrap();
        (probs, fused)
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory holding `libresflow_capi.a` and `.so`: `cargo test` builds them into the
/// test binary's own `deps/` directory (`cargo build` copies them one level up).
pub fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let candidates = [deps.clone(), deps.parent().unwrap().to_path_buf()];
    candidates
        .iter()
        .find(|d| d.join("libresflow_capi.a").exists())
        .unwrap_or_else(|| {
            panic!(
                "no libresflow_capi.a in {} or its parent: build it with `cargo build -p capi`",
                deps.display()
            )
        })
        .clone()
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// True when `g++` runs; otherwise prints why the C++ tests are skipped.
pub fn have_gxx() -> bool {
    match Command::new("g++").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIPPED: g++ is not installed; the C++ examples were not built or run");
            false
        }
    }
}

/// How to link the library.
#[derive(Clone, Copy, Debug)]
pub enum Link {
    Static,
    Shared,
}

/// Compiles `examples/cpp/<source>` (C99 with gcc for `.c`, C++17 with g++ otherwise) into `out`, with extra flags; panics with g++'s
/// output on failure.
pub fn build_cpp(source: &str, out: &Path, link: Link, flags: &[&str]) {
    let root = repo_root();
    let lib = lib_dir();
    let c = source.ends_with(".c");
    let mut cmd = Command::new(if c { "gcc" } else { "g++" });
    cmd.args(if c {
        ["-std=c99", "-pedantic"]
    } else {
        ["-std=c++17", "-pedantic"]
    })
    .args(["-Wall", "-Wextra", "-Werror"])
    .args(flags)
    .arg("-I")
    .arg(root.join("include"))
    .arg(root.join("examples/cpp").join(source))
    .arg("-o")
    .arg(out);
    match link {
        Link::Static => {
            cmd.arg(lib.join("libresflow_capi.a"));
        }
        Link::Shared => {
            cmd.arg(format!("-L{}", lib.display()))
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-lresflow_capi");
        }
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let o = cmd.output().expect("g++ runs");
    assert!(
        o.status.success(),
        "g++ failed on {source}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs a program, returning stdout; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("the program runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{out}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}
