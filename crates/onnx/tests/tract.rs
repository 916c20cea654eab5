//! Every model kind's exported ONNX graph, run by tract (an independent ONNX runtime),
//! against our scorer: bags of every length from 0 (padded with values the graph must
//! ignore), the unknown id 0 and the last id of every table, both fusions, every activation
//! and BatchNorm mode; and the per-candidate NaN of an invalid candidate.

use model::config::{Activation, BatchNormMode, FusionKind, ModelKind};
use model::rng::SplitMix64;
use model::{Field, InputLayout, Model, ModelConfig, RequestBuffers, Scorer};
use testkit::fixtures::{small_config, small_layout};
use tract_onnx::prelude::*;

/// The exported graph against the scorer: the same arithmetic in other orders (Gemm
/// against our GEMM, ReduceSum against a running sum), through a sigmoid.
const TOLERANCE: f32 = tensor::tolerance::APPROXIMATE;

/// The shared small model's configuration as `kind`; `None` for a kind defined for fewer
/// tasks (ESMM: two), which refuses three.
fn config(kind: &str, tasks: usize) -> Option<ModelConfig> {
    small_config(tasks).with_model(kind).ok()
}

/// One candidate: per field (layout order) its ids, and its dense features.
struct Candidate {
    ids: Vec<Vec<i64>>,
    dense: Vec<f32>,
}

/// `n` candidates: uniform ids with the unknown id 0 and the last id of each table forced
/// on some rows, bags of 0 to 4 ids.
fn candidates(layout: &InputLayout, n: usize, seed: u64) -> Vec<Candidate> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|r| Candidate {
            ids: layout
                .fields
                .iter()
                .map(|f| {
                    let v = f.vocab as u64;
                    let draw = |rng: &mut SplitMix64| match (r + rng.below(3) as usize) % 5 {
                        0 => 0,
                        1 => v as i64 - 1,
                        _ => rng.below(v) as i64,
                    };
                    let len = if f.bag.is_some() {
                        (r + rng.below(2) as usize) % 5
                    } else {
                        1
                    };
                    (0..len).map(|_| draw(&mut rng)).collect()
                })
                .collect(),
            dense: (0..layout.dense).map(|_| rng.uniform(1.5)).collect(),
        })
        .collect()
}

/// The graph's inputs for `cands`, in the graph's input order; bags padded with `pad`.
fn onnx_inputs(layout: &InputLayout, cands: &[Candidate], pad: i64) -> TVec<TValue> {
    let n = cands.len();
    let mut inputs = tvec![];
    for (i, f) in layout.fields.iter().enumerate() {
        if f.bag.is_none() {
            let ids: Vec<i64> = cands.iter().map(|c| c.ids[i][0]).collect();
            inputs.push(tensor1(&ids).into());
        } else {
            let l = cands.iter().map(|c| c.ids[i].len()).max().unwrap_or(0);
            let mut padded = vec![pad; n * l];
            for (r, c) in cands.iter().enumerate() {
                padded[r * l..r * l + c.ids[i].len()].copy_from_slice(&c.ids[i]);
            }
            let lengths: Vec<i64> = cands.iter().map(|c| c.ids[i].len() as i64).collect();
            let ids = tract_ndarray::Array2::from_shape_vec((n, l), padded).unwrap();
            inputs.push(ids.into_tensor().into());
            inputs.push(tensor1(&lengths).into());
        }
    }
    if layout.dense > 0 {
        let d: Vec<f32> = cands.iter().flat_map(|c| c.dense.clone()).collect();
        let d = tract_ndarray::Array2::from_shape_vec((n, layout.dense), d).unwrap();
        inputs.push(d.into_tensor().into());
    }
    inputs
}

type Runnable = std::sync::Arc<TypedRunnableModel>;

fn load(model: &Model) -> Runnable {
    let bytes = onnx::to_bytes(model).unwrap();
    tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

/// `(probabilities N x T, fused N)` from the graph.
fn run(graph: &Runnable, inputs: TVec<TValue>) -> (Vec<f32>, Vec<f32>) {
    let out = graph.run(inputs).unwrap();
    let p = out[0].to_plain_array_view::<f32>().unwrap();
    let f = out[1].to_plain_array_view::<f32>().unwrap();
    (p.iter().copied().collect(), f.iter().copied().collect())
}

/// `(probabilities, fused)` from the scorer.
fn score(scorer: &Scorer, cands: &[Candidate]) -> (Vec<f32>, Vec<f32>) {
    let layout = &scorer.model().layout;
    let mut req = RequestBuffers::new(scorer);
    for c in cands {
        let single: Vec<u32> = (0..layout.fields.len())
            .filter(|&i| layout.fields[i].bag.is_none())
            .map(|i| c.ids[i][0] as u32)
            .collect();
        let bags: Vec<Vec<u32>> = (0..layout.fields.len())
            .filter(|&i| layout.fields[i].bag.is_some())
            .map(|i| c.ids[i].iter().map(|&v| v as u32).collect())
            .collect();
        let bag_refs: Vec<&[u32]> = bags.iter().map(Vec::as_slice).collect();
        req.push_candidate(&single, &bag_refs, &c.dense);
    }
    let n = cands.len();
    let tasks = scorer.tasks();
    let (mut p, mut f) = (vec![0.0; n * tasks], vec![0.0; n]);
    let mut ws = scorer.workspace(n);
    req.score(scorer, &mut ws, &mut p, &mut f).unwrap();
    (p, f)
}

fn check(what: &str, model: Model, n: usize, seed: u64) {
    let layout = model.layout.clone();
    let graph = load(&model);
    let scorer = Scorer::new(model).unwrap();
    let cands = candidates(&layout, n, seed);
    let (want_p, want_f) = score(&scorer, &cands);
    // Padding past a bag's length is ignored, whatever it holds.
    for pad in [0, -3, 1 << 40] {
        let (p, f) = run(&graph, onnx_inputs(&layout, &cands, pad));
        let gap = testkit::max_abs_diff(&p, &want_p);
        assert!(
            gap <= TOLERANCE,
            "{what}, pad {pad}: probabilities off by {gap}"
        );
        let gap = testkit::max_abs_diff(&f, &want_f);
        assert!(
            gap <= TOLERANCE,
            "{what}, pad {pad}: fused scores off by {gap}"
        );
    }
}

#[test]
fn every_kind_matches_the_scorer() {
    let mut checked = Vec::new();
    for kind in ModelKind::NAMES {
        for tasks in [2, 3] {
            let Some(c) = config(kind, tasks) else {
                assert_eq!(tasks, 3, "{kind} must export with two tasks");
                continue;
            };
            for n in [1, 17] {
                let model = Model::random(c.clone(), small_layout(tasks), 3 + n as u64).unwrap();
                check(
                    &format!("{kind}, {tasks} tasks, {n} candidates"),
                    model,
                    n,
                    n as u64,
                );
            }
            checked.push((kind, tasks));
        }
    }
    // Every kind exported with two tasks (and those defined for more, with three).
    for kind in ModelKind::NAMES {
        assert!(checked.contains(&(kind, 2)), "{kind} was not checked");
    }
}

#[test]
fn every_activation_batch_norm_mode_and_fusion() {
    for kind in ["resflow", "mmoe", "esmm", "aitm"] {
        for (activation, bn, fusion) in [
            (
                Activation::Relu,
                BatchNormMode::Batch,
                FusionKind::Multiplicative,
            ),
            (Activation::Prelu, BatchNormMode::None, FusionKind::Additive),
            (
                Activation::Prelu,
                BatchNormMode::Batch,
                FusionKind::Multiplicative,
            ),
        ] {
            let mut c = config(kind, 2).unwrap();
            c.activation = activation;
            c.batch_norm = bn;
            c.fusion.kind = fusion;
            c.fusion.weights = vec![0.7, 1.3];
            let model = Model::random(c, small_layout(2), 11).unwrap();
            check(
                &format!("{kind}, {activation:?}, {bn:?}, {fusion:?}"),
                model,
                9,
                5,
            );
        }
    }
}

#[test]
fn layouts_without_bags_singles_or_dense() {
    let base = small_layout(2);
    let only = |keep: &dyn Fn(&Field) -> bool, dense: usize| InputLayout {
        fields: base.fields.iter().filter(|f| keep(f)).cloned().collect(),
        dense,
        tasks: base.tasks.clone(),
    };
    for (what, l) in [
        ("singles only", only(&|f| f.bag.is_none(), 0)),
        ("bags only", only(&|f| f.bag.is_some(), 0)),
        ("one single field and dense", only(&|f| f.name == "age", 3)),
        ("dense only", only(&|_| false, 4)),
    ] {
        let model = Model::random(config("resflow", 2).unwrap(), l, 2).unwrap();
        check(what, model, 6, 9);
    }
}

#[test]
fn an_invalid_candidate_scores_nan_and_the_others_do_not_change() {
    let model = Model::random(config("resflow", 2).unwrap(), small_layout(2), 4).unwrap();
    let l = model.layout.clone();
    let graph = load(&model);
    let cands = candidates(&l, 5, 1);
    let (good, _) = run(&graph, onnx_inputs(&l, &cands, 0));
    type Breakage<'a> = (&'a str, &'a dyn Fn(&mut Candidate));
    let breakages: [Breakage<'_>; 5] = [
        ("id at the vocabulary size", &|c| c.ids[0][0] = 50),
        ("negative id", &|c| c.ids[3][0] = -1),
        ("bag id out of range", &|c| c.ids[2] = vec![3, 300]),
        ("infinite dense feature", &|c| c.dense[1] = f32::INFINITY),
        ("NaN dense feature", &|c| c.dense[0] = f32::NAN),
    ];
    for (what, breakage) in breakages {
        let mut cands = candidates(&l, 5, 1);
        breakage(&mut cands[2]);
        let (p, f) = run(&graph, onnx_inputs(&l, &cands, 0));
        assert!(p[4].is_nan() && p[5].is_nan() && f[2].is_nan(), "{what}");
        let others = |v: &[f32]| [&v[..4], &v[6..]].concat();
        assert_eq!(
            others(&p),
            others(&good),
            "{what}: other candidates changed"
        );
    }
    // A length beyond the padded width, and a negative length.
    for bad_len in [7, -1] {
        let mut inputs = onnx_inputs(&l, &cands, 0);
        // Inputs: user, age, history ids, history lengths, ...
        let mut lengths: Vec<i64> = inputs[3]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        lengths[1] = bad_len;
        inputs[3] = tensor1(&lengths).into();
        let (p, _) = run(&graph, inputs);
        assert!(p[2].is_nan() && p[3].is_nan(), "length {bad_len}");
        assert_eq!(p[0], good[0]);
    }
}

#[test]
fn the_graph_declares_its_inputs_and_outputs() {
    let model = Model::random(config("ple", 3).unwrap(), small_layout(3), 1).unwrap();
    let bytes = onnx::to_bytes(&model).unwrap();
    let g = tract_onnx::onnx().model_for_read(&mut &bytes[..]).unwrap();
    let names = |outlets: &[OutletId]| -> Vec<String> {
        outlets
            .iter()
            .map(|o| g.node(o.node).name.clone())
            .collect()
    };
    assert_eq!(
        names(&g.inputs),
        [
            "ids/user",
            "ids/age",
            "ids/history",
            "lengths/history",
            "ids/item",
            "ids/shop",
            "ids/tags",
            "lengths/tags",
            "ids/cat",
            "dense"
        ]
    );
    let outputs: Vec<String> = g
        .outputs
        .iter()
        .map(|o| g.outlet_label(*o).unwrap_or_default().to_string())
        .collect();
    assert_eq!(outputs, [onnx::PROBABILITIES, onnx::FUSED]);
}

#[test]
fn a_model_too_large_for_one_file_is_refused_before_any_work() {
    // A layout of 70 million rows of 8 floats (2.24 GB of tables): the size check reads the
    // layout before anything is built, so the tables are never allocated.
    let mut big = Model::random(config("resflow", 2).unwrap(), small_layout(2), 1).unwrap();
    big.layout.fields[0].vocab = 70_000_000;
    let err = onnx::to_bytes(&big).unwrap_err();
    assert!(
        matches!(err, onnx::ExportError::TooLarge { bytes } if bytes > 1 << 31),
        "{err}"
    );
    assert!(err.to_string().contains("2 GiB"), "{err}");
}
