//! The serving plan folds BatchNorm into the weights and splits the first layer by request
//! and candidate fields without changing a single prediction (beyond rounding): the
//! scorer equals the plain reference forward (every BatchNorm applied separately), for
//! every BatchNorm mode and activation.

use resflow::config::{Activation, BatchNormMode, TaskConfig};
use resflow::rng::SplitMix64;
use resflow::{
    Bag, CandidateRef, Field, InputLayout, Model, ModelConfig, Pooling, Request, Scorer,
};

/// Folding reorders a few hundred multiply-adds per unit before a sigmoid.
const FOLD_TOLERANCE: f32 = tensor::tolerance::PROBABILITY;

fn setup(mode: BatchNormMode, activation: Activation) -> Model {
    let layout = InputLayout {
        fields: vec![
            Field {
                name: "a".into(),
                vocab: 30,
                bag: None,
            },
            Field {
                name: "b".into(),
                vocab: 20,
                bag: Some(Pooling::Sum),
            },
            Field {
                name: "c".into(),
                vocab: 9,
                bag: Some(Pooling::Mean),
            },
        ],
        dense: 4,
        tasks: vec!["click".into(), "cart".into(), "order".into()],
    };
    let config = ModelConfig {
        embedding_dim: 6,
        hidden: vec![16, 8],
        batch_norm: mode,
        activation,
        tasks: ["click", "cart", "order"]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        ..ModelConfig::default()
    };
    let mut p = Model::init(config, layout).unwrap();
    // Move every parameter away from its initial value so that each fold matters.
    let mut rng = SplitMix64::new(99);
    for (name, m) in &mut p.tensors {
        let (base, spread) = match name.rsplit('/').next().unwrap() {
            "gamma" | "running_var" => (1.0, 0.5),
            "beta" => (0.0, 0.3),
            "running_mean" => (0.0, 0.2),
            "slope" => (0.0, 0.3),
            "bias" => (0.0, 0.2),
            _ => continue,
        };
        m.as_mut_slice()
            .iter_mut()
            .for_each(|x| *x = base + rng.uniform(spread));
    }
    p
}

#[test]
fn export_preserves_predictions_in_every_mode() {
    for mode in [
        BatchNormMode::Affine,
        BatchNormMode::Batch,
        BatchNormMode::None,
    ] {
        for activation in [Activation::Prelu, Activation::Relu] {
            let mut params = setup(mode, activation);
            // Field "a" is request-level: the plan splits every first layer.
            params.config.request_fields = vec!["a".into()];
            let scorer = Scorer::new(params.clone()).unwrap();
            assert!(scorer.plan().splits_requests());
            let mut ws = scorer.workspace(1);
            let mut rng = SplitMix64::new(5);
            for _ in 0..40 {
                let a = vec![rng.below(30) as u32];
                let b: Vec<u32> = (0..rng.below(4)).map(|_| rng.below(20) as u32).collect();
                let c: Vec<u32> = (0..rng.below(3)).map(|_| rng.below(9) as u32).collect();
                let dense: Vec<f32> = (0..4).map(|_| rng.uniform(2.0)).collect();
                let ids: [&[u32]; 3] = [&a, &b, &c];
                let cand = CandidateRef {
                    ids: &ids,
                    dense: &dense,
                };
                let want = params.forward_naive(cand);
                let (ob, oc) = ([0, b.len() as u64], [0, c.len() as u64]);
                let bags = [
                    Bag {
                        offsets: &ob,
                        ids: &b,
                    },
                    Bag {
                        offsets: &oc,
                        ids: &c,
                    },
                ];
                let req = Request {
                    candidates: 1,
                    ids: &[],
                    bags: &bags,
                    dense: &dense,
                    dense_stride: 4,
                    request_ids: &a,
                    request_bags: &[],
                };
                let (mut got, mut fused) = (vec![0.0; 3], vec![0.0]);
                scorer.score(&mut ws, &req, &mut got, &mut fused).unwrap();
                assert_eq!(want.len(), 3);
                for (t, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= FOLD_TOLERANCE,
                        "{mode:?} {activation:?} task {t}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn init_is_seeded_and_counts_parameters() {
    let a = setup(BatchNormMode::Affine, Activation::Prelu);
    let b = setup(BatchNormMode::Affine, Activation::Prelu);
    assert_eq!(a, b);
    // embeddings (30 + 20 + 9) x 6 = 354; input BN 2 x 22 = 44; per tower:
    // 22 x 16 + 16 + 16 + 32 = 416, 16 x 8 + 8 + 8 + 16 = 160, logit 8 + 1 = 9 -> 585; x 3 = 1755.
    assert_eq!(a.parameter_count(), 354 + 44 + 1755);
    let mut c = a.config.clone();
    c.seed += 1;
    let other = Model::init(c, a.layout.clone()).unwrap();
    let w = "head/resflow/task/0/layer/0/weight";
    assert_ne!(other.tensor(w).unwrap(), a.tensor(w).unwrap());
}

#[test]
fn task_count_mismatch_is_an_error() {
    let p = setup(BatchNormMode::Affine, Activation::Prelu);
    let mut layout = p.layout.clone();
    layout.tasks.pop();
    let err = Model::init(p.config.clone(), layout)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 tasks") && err.contains("configuration 3"),
        "{err}"
    );
}
