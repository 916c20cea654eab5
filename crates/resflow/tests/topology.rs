//! Task topologies end to end: a non-chain ResFlow (several parents, a parent later in the
//! task order, one layer's links off) trains, and its exported file scores what its
//! trainer predicts; the chain written out explicitly trains bit for bit like the default,
//! and a default configuration is stored exactly as before the topology existed.

mod common;

use common::{predictions, served, temp};

use resflow::{Model, ModelConfig, Scorer, Trainer};
use shards::Dataset;
use shards::synth::{SynthConfig, generate};

/// The scorer runs the same head on a tape, with batches of another size.
const SERVE_TOLERANCE: f32 = tensor::tolerance::APPROXIMATE;

fn funnel(name: &str, rows: usize, seed: u64) -> (std::path::PathBuf, Dataset) {
    let dir = temp(name);
    generate(
        &SynthConfig {
            rows,
            seed,
            tasks: 3,
            max_vocab: 300,
            rows_per_shard: 8_000,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    let ds = Dataset::open(&dir).unwrap();
    (dir, ds)
}

fn config(extra: &str) -> ModelConfig {
    let tasks = r#""tasks": [{"name": "click"}, {"name": "cart"}, {"name": "order"}]"#;
    ModelConfig::from_json(&format!(
        r#"{{"embedding_dim": 8, "hidden": [24, 12], "batch_size": 512, "batch_norm": "batch",
            "optimizer": {{"learning_rate": 0.003}}, {tasks}{extra}}}"#
    ))
    .unwrap()
}

#[test]
fn a_non_chain_topology_serves_what_it_trained() {
    let (train_dir, train) = funnel("topo-train", 12_000, 21);
    let (eval_dir, eval) = funnel("topo-eval", 3_000, 22);
    let layout = resflow::layout_of(train.schema());
    let c = config(
        r#", "topology": {"parents": {
                "click": {"hidden": ["cart"], "logits": []},
                "cart": {"hidden": [], "logits": []},
                "order": {"hidden": ["click", "cart"], "logits": ["click", "cart"]}},
             "layers": [false, true]}"#,
    );
    assert_eq!(c.links().unwrap().order, vec![1, 0, 2]);
    let mut t = Trainer::new(c, layout, 2).unwrap();
    t.fit(&train, 1, |_, _| Ok(())).unwrap();
    let path = temp("topo-model.safetensors");
    t.export().unwrap().save(&path).unwrap();
    let model = Model::load(&path).unwrap();
    assert_eq!(
        model.config,
        t.export().unwrap().config,
        "the topology is stored"
    );
    let scorer = Scorer::new(model).unwrap();
    let (predicted, scored) = (predictions(&mut t, &eval), served(&scorer, &eval));
    assert_eq!(predicted.len(), 3 * eval.rows());
    let gap = testkit::max_abs_diff(&predicted, &scored);
    assert!(gap <= SERVE_TOLERANCE, "scorer vs trainer {gap}");
    for d in [train_dir, eval_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
    std::fs::remove_file(path).unwrap();
}

#[test]
fn the_explicit_chain_is_the_default_bit_for_bit() {
    let (dir, train) = funnel("topo-chain", 4_000, 23);
    let layout = resflow::layout_of(train.schema());
    let trained = |c: ModelConfig| {
        let mut t = Trainer::new(c, layout.clone(), 2).unwrap();
        t.fit(&train, 1, |_, _| Ok(())).unwrap();
        t.export().unwrap()
    };
    let default = trained(config(""));
    let explicit = trained(config(
        r#", "topology": {"parents": {"click": {"hidden": [], "logits": []},
                                       "cart": {"hidden": ["click"], "logits": ["click"]},
                                       "order": {"hidden": ["cart"], "logits": ["cart"]}},
                          "layers": [true, true]}"#,
    ));
    assert_eq!(default.tensors, explicit.tensors);
    assert_eq!(default.embeddings, explicit.embeddings);
    // A default configuration serialises without the new key: files written before the
    // topology existed and files written now hold the same configuration text.
    let text = serde_json::to_string(&default.config).unwrap();
    assert!(!text.contains("topology"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}
