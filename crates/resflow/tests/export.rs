//! Export folds BatchNorm into the weights without changing a single prediction (beyond
//! rounding): the serving model's naive forward equals the parameters' inference forward
//! with every BatchNorm applied separately, for every BatchNorm mode and activation.

use resflow::config::{Activation, BatchNormMode, TaskConfig};
use resflow::rng::SplitMix64;
use resflow::{CandidateRef, Field, InputLayout, ModelConfig, ModelParams, Pooling};

/// Folding reorders a few hundred multiply-adds per unit before a sigmoid.
const FOLD_TOLERANCE: f32 = 2e-6;

fn setup(mode: BatchNormMode, activation: Activation) -> ModelParams {
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
            .map(|n| TaskConfig {
                name: n.to_string(),
                pos_weight: 1.0,
                loss_weight: 1.0,
            })
            .collect(),
        ..ModelConfig::default()
    };
    let mut p = ModelParams::init(config, layout).unwrap();
    // Move every parameter away from its initial value so that each fold matters.
    let mut rng = SplitMix64::new(99);
    let mut jiggle = |v: &mut [f32], base: f32, spread: f32| {
        v.iter_mut().for_each(|x| *x = base + rng.uniform(spread))
    };
    jiggle(&mut p.input_bn.gamma, 1.0, 0.5);
    jiggle(&mut p.input_bn.beta, 0.0, 0.3);
    jiggle(&mut p.input_bn.running_mean, 0.0, 0.2);
    jiggle(&mut p.input_bn.running_var, 1.0, 0.5);
    for t in &mut p.towers {
        for l in &mut t.layers {
            jiggle(&mut l.bias, 0.0, 0.2);
            jiggle(&mut l.slope, 0.0, 0.3);
            jiggle(&mut l.bn.gamma, 1.0, 0.5);
            jiggle(&mut l.bn.beta, 0.0, 0.3);
            jiggle(&mut l.bn.running_mean, 0.0, 0.2);
            jiggle(&mut l.bn.running_var, 1.0, 0.5);
        }
        t.logit_bias = 0.3;
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
            let params = setup(mode, activation);
            let serving = params.export().unwrap();
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
                let want = params.forward_eval_naive(cand);
                let got = serving.forward_naive(cand);
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
    let other = ModelParams::init(c, a.layout.clone()).unwrap();
    assert_ne!(
        other.towers[0].layers[0].weight,
        a.towers[0].layers[0].weight
    );
}

#[test]
fn task_count_mismatch_is_an_error() {
    let p = setup(BatchNormMode::Affine, Activation::Prelu);
    let mut layout = p.layout.clone();
    layout.tasks.pop();
    let err = ModelParams::init(p.config.clone(), layout)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 tasks") && err.contains("configuration 3"),
        "{err}"
    );
}
