//! A golden forward/backward test: a tiny ResFlow (two fields, one of them a bag, one dense
//! feature, one hidden layer of 3, two tasks with residual links, frozen "affine"
//! BatchNorm, PReLU, weighted cross-entropy) with fixed weights and inputs. The expected
//! logits, loss and gradients were computed independently: the forward pass re-written
//! from the paper's equations in numpy (float64), the loss as TensorFlow's
//! `weighted_cross_entropy_with_logits`, and the gradients by float64 central differences
//! (h = 1e-6). The script is `golden_reference.py` next to this file (`python3
//! golden_reference.py` prints the values pasted below; it needs numpy).

use autodiff::{Grads, Tape};
use resflow::config::{BatchNormMode, TaskConfig};
use resflow::network::{Forward, Mode, Network, Scratch};
use resflow::{Field, InputLayout, Model, ModelConfig, Pooling};
use shards::{DenseSpec, FORMAT_VERSION, MultiField, Row, Schema, ShardWriter, SingleField};
use tensor::Matrix;

/// f32 forward and backward against a float64 reference: a few hundred roundings.
const GOLDEN: f32 = tensor::tolerance::F64_REFERENCE;

fn m(rows: usize, cols: usize, v: &[f32]) -> Matrix {
    Matrix::from_slice(rows, cols, v).unwrap()
}

/// A BatchNorm's four named tensors (statistics 0 / 1).
fn bn(name: &str, gamma: &[f32], beta: &[f32]) -> Vec<(String, Matrix)> {
    let c = gamma.len();
    vec![
        (format!("{name}/gamma"), m(1, c, gamma)),
        (format!("{name}/beta"), m(1, c, beta)),
        (format!("{name}/running_mean"), m(1, c, &vec![0.0; c])),
        (format!("{name}/running_var"), m(1, c, &vec![1.0; c])),
    ]
}

/// The name of ResFlow's tensor `rest` of task `t`.
fn name(t: usize, rest: &str) -> String {
    format!("head/resflow/task/{t}/{rest}")
}

fn close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= GOLDEN as f64,
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn tiny_model_matches_an_independent_computation() {
    let layout = InputLayout {
        fields: vec![
            Field {
                name: "a".into(),
                vocab: 3,
                bag: None,
            },
            Field {
                name: "b".into(),
                vocab: 4,
                bag: Some(Pooling::Sum),
            },
        ],
        dense: 1,
        tasks: vec!["click".into(), "conversion".into()],
    };
    let config = ModelConfig {
        embedding_dim: 2,
        hidden: vec![3],
        batch_norm: BatchNormMode::Affine,
        bn_epsilon: 1e-3,
        tasks: vec![
            TaskConfig {
                name: "click".into(),
                pos_weight: 2.0,
                loss_weight: 1.0,
            },
            TaskConfig {
                name: "conversion".into(),
                pos_weight: 3.0,
                loss_weight: 0.5,
            },
        ],
        ..ModelConfig::default()
    };
    #[allow(clippy::too_many_arguments)]
    let tower =
        |t: usize, w: &[f32], b: &[f32], s: &[f32], g: &[f32], be: &[f32], wz: &[f32], bz: f32| {
            let mut v = vec![
                (name(t, "layer/0/weight"), m(5, 3, w)),
                (name(t, "layer/0/bias"), m(1, 3, b)),
                (name(t, "layer/0/slope"), m(1, 3, s)),
            ];
            v.extend(bn(&name(t, "layer/0/bn"), g, be));
            v.push((name(t, "logit/weight"), m(3, 1, wz)));
            v.push((name(t, "logit/bias"), m(1, 1, &[bz])));
            v
        };
    let mut tensors = bn(
        "input_bn",
        &[1.1, 0.9, 1.2, 0.8, 1.05],
        &[0.01, -0.02, 0.03, 0.0, -0.01],
    );
    let towers = [
        tower(
            0,
            &[
                0.2, -0.1, 0.3, 0.4, 0.2, -0.3, -0.2, 0.1, 0.5, 0.3, -0.4, 0.1, 0.1, 0.2, -0.2,
            ],
            &[0.05, -0.05, 0.1],
            &[0.1, 0.2, -0.1],
            &[1.0, 0.9, 1.1],
            &[0.0, 0.1, -0.1],
            &[0.5, -0.3, 0.2],
            0.1,
        ),
        tower(
            1,
            &[
                -0.3, 0.2, 0.1, 0.1, -0.2, 0.4, 0.25, 0.3, -0.1, -0.1, 0.1, 0.2, 0.2, -0.3, 0.3,
            ],
            &[-0.1, 0.0, 0.05],
            &[0.3, -0.2, 0.15],
            &[0.95, 1.05, 1.0],
            &[0.05, 0.0, 0.02],
            &[-0.2, 0.4, 0.3],
            -0.2,
        ),
    ];
    tensors.extend(towers.into_iter().flatten());
    let params = Model {
        config,
        layout,
        embeddings: vec![
            m(3, 2, &[0.1, -0.2, 0.3, 0.05, -0.4, 0.25]),
            m(4, 2, &[0.2, 0.1, -0.1, 0.3, 0.05, -0.15, 0.4, 0.2]),
        ],
        tensors,
    }
    .canonical()
    .unwrap();
    // The batch: a = [0, 2, 1], bags b = [[1, 3], [], [2]], dense [0.5, -1, 2],
    // labels (click, conversion) = (1, 1), (0, 0), (1, 0).
    let dir = std::env::temp_dir().join(format!("resflow-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let schema = Schema {
        format_version: FORMAT_VERSION,
        tasks: vec!["click".into(), "conversion".into()],
        single: vec![SingleField {
            name: "a".into(),
            vocab: 3,
        }],
        multi: vec![MultiField {
            name: "b".into(),
            vocab: 4,
            pooling: shards::Pooling::Sum,
        }],
        dense: DenseSpec {
            count: 1,
            ..DenseSpec::default()
        },
        group: None,
        weight: false,
        soft_labels: false,
        targets: Vec::new(),
        item: None,
        encodings: Vec::new(),
    };
    let mut w = ShardWriter::create(&dir, schema, 100, false).unwrap();
    for (a, bag, d, y) in [
        (0u32, vec![1u32, 3], 0.5f32, [1.0f32, 1.0]),
        (2, vec![], -1.0, [0.0, 0.0]),
        (1, vec![2], 2.0, [1.0, 0.0]),
    ] {
        w.push(&Row {
            labels: &y,
            single: &[a],
            bags: &[&bag],
            dense: &[d],
            group: 0,
            weight: 1.0,
        })
        .unwrap();
    }
    w.finish().unwrap();
    let ds = shards::Dataset::open(&dir).unwrap();
    let mut batch = ds.new_batch();
    assert!(ds.batches(8, None).next_into(&mut batch));

    let (net, store) = Network::from_params(&params).unwrap();
    let (mut tape, mut scratch, mut fwd) = (Tape::new(), Scratch::default(), Forward::default());
    net.forward(
        &mut tape,
        &store,
        &batch.view(),
        Mode::Train,
        3.0,
        true,
        &mut scratch,
        &mut fwd,
    )
    .unwrap();
    close(
        tape.value(fwd.logits[0]),
        &[0.17229226959147761, 0.0861600788624167, 0.08874740281058249],
        "logits 0",
    );
    close(
        tape.value(fwd.logits[1]),
        &[0.1405888929901923, 0.00822992678666844, 0.1911422557705911],
        "logits 1",
    );
    let loss = fwd.loss.unwrap();
    close(tape.value(loss), &[1.6471135966419648], "loss");

    let mut grads = Grads::zeros_like(&store);
    tape.backward(loss, &mut grads).unwrap();
    let dense = |name: &str| {
        let k = store
            .dense
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        grads.dense[k].clone()
    };
    close(
        &dense("head/resflow/task/0/layer/0/weight"),
        &[
            -0.07623614128871026,
            0.0368608967793449,
            -0.05888644161178291,
            0.04337539105669919,
            -0.00171315095442992,
            0.05624571097762043,
            -0.09805304279630889,
            0.0130170556555953,
            -0.07322541195620147,
            -0.07293219239645765,
            -0.00639283903591803,
            -0.07811323243789303,
            -0.4015012168290255,
            0.2113881539811402,
            -0.18534643586587407,
        ],
        "dL/dW task 0",
    );
    close(
        &dense("head/resflow/task/1/layer/0/slope"),
        &[
            0.00246259346248223,
            -0.02102445906260186,
            -0.00581758474726968,
        ],
        "dL/dslope task 1",
    );
    close(
        &dense("input_bn/gamma"),
        &[
            -0.0378450961679988,
            -0.00190657023502183,
            -0.01753298284334903,
            -0.04893242144810017,
            0.07042645933097447,
        ],
        "dL/dgamma input",
    );
    close(
        &dense("head/resflow/task/1/logit/bias"),
        &[-0.05750559761708018],
        "dL/dbias logit 1",
    );
    close(
        &dense("head/resflow/task/0/layer/0/bn/gamma"),
        &[
            -0.05744630193760258,
            0.0413107235086585,
            -0.04795601915574821,
        ],
        "dL/dgamma task 0",
    );
    // Embedding gradients are sparse rows; made dense here to compare.
    let dense_table = |k: usize, rows: usize| {
        let mut s = grads.sparse[k].clone();
        s.coalesce();
        let mut out = vec![0.0f32; rows * 2];
        for (j, &id) in s.ids.iter().enumerate() {
            out[id as usize * 2..id as usize * 2 + 2].copy_from_slice(&s.rows[j * 2..j * 2 + 2]);
        }
        out
    };
    close(
        &dense_table(0, 3),
        &[
            -0.15808519426840917,
            -0.02865052339817709,
            -0.03164539363886831,
            -0.02136016341580671,
            0.04081867044369858,
            -0.02551203892586784,
        ],
        "dL/dE_a",
    );
    close(
        &dense_table(1, 4),
        &[
            0.0,
            0.0,
            -0.07561073300799137,
            -0.09522251598337306,
            0.03287280980757146,
            -0.05643547218436851,
            -0.07561073300799137,
            -0.09522251598337306,
        ],
        "dL/dE_b",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
