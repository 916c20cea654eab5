//! Shared by the integration tests: the small test model, the request generator the C++
//! examples use (SplitMix64, same order), and helpers to find and run g++.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use resflow::config::TaskConfig;
use resflow::{Field, InputLayout, Model, ModelConfig, Pooling, Scorer};

/// A small model with every kind of input: request-level single and multi-valued fields,
/// candidate-level single and multi-valued (mean-pooled) fields, and 3 dense features.
pub fn test_model(seed: u64) -> Model {
    test_model_of("resflow", seed)
}

/// [`test_model`] as another model kind (`"mmoe"`, `"aitm"`, ...; see `docs/models.md`);
/// the kinds defined for two tasks only (ESMM, ESCM2, DCMT) get the first two.
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
    let mut layout = layout;
    if resflow::config::ModelKind::from_name(kind).is_ok_and(|k| k.two_tasks_only()) {
        layout.tasks.truncate(2);
    }
    let config = ModelConfig {
        embedding_dim: 8,
        hidden: vec![16, 8],
        tasks: layout
            .tasks
            .iter()
            .map(|name| TaskConfig::unweighted(name.clone()))
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

/// A request's owned buffers: the library's request builder, whose seeded generator
/// (`RequestBuffers::random`) the C++ programs of these tests replay.
pub use resflow::RequestBuffers as RequestData;

/// Scores `d` with the Rust [`Scorer`]: (probabilities, fused scores).
pub fn score_request(d: &RequestData, scorer: &Scorer) -> (Vec<f32>, Vec<f32>) {
    let mut ws = scorer.workspace(d.candidates);
    let n = d.candidates;
    let (mut probs, mut fused) = (vec![0.0; n * scorer.tasks()], vec![0.0; n]);
    d.score(scorer, &mut ws, &mut probs, &mut fused).unwrap();
    (probs, fused)
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
