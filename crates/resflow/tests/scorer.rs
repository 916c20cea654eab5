//! The scorer against the naive forward pass, over model variants; request-level fields;
//! the model file round trip; and every kind of bad request and bad file.

use resflow::config::{BatchNormMode, FusionKind, Residual};
use resflow::rng::SplitMix64;
use resflow::{Bag, CandidateRef, InputLayout, Model, ModelError, Precision, Request, Scorer};
use testkit::fixtures::{small_config, small_layout};

/// Agreement between the fast and the naive forward pass: different summation orders over
/// a few hundred terms, then a sigmoid.
const PROB_TOLERANCE: f32 = tensor::tolerance::PROBABILITY;

/// A random request: per candidate, one id per single field and 0..4 ids per bag.
struct Inputs {
    n: usize,
    /// Per candidate, per field (layout order), its ids.
    ids: Vec<Vec<Vec<u32>>>,
    dense: Vec<f32>,
}

fn inputs(layout: &InputLayout, n: usize, seed: u64, shared_user: bool) -> Inputs {
    let mut rng = SplitMix64::new(seed);
    let user = rng.below(50) as u32;
    let ids = (0..n)
        .map(|_| {
            layout
                .fields
                .iter()
                .map(|f| {
                    if f.name == "user" && shared_user {
                        vec![user]
                    } else if f.bag.is_some() {
                        (0..rng.below(4))
                            .map(|_| rng.below(f.vocab as u64) as u32)
                            .collect()
                    } else {
                        vec![rng.below(f.vocab as u64) as u32]
                    }
                })
                .collect()
        })
        .collect();
    let dense = (0..n * layout.dense).map(|_| rng.uniform(1.0)).collect();
    Inputs { n, ids, dense }
}

/// The names among `names` that are bags (`bag`) or single-valued fields (`!bag`).
fn split<'a>(layout: &InputLayout, names: Vec<&'a str>, bag: bool) -> Vec<&'a str> {
    names
        .into_iter()
        .filter(|n| layout.fields[layout.field_index(n).unwrap()].bag.is_some() == bag)
        .collect()
}

/// Scores `inp` with `scorer`, building the request in the scorer's field groups.
fn score(scorer: &Scorer, inp: &Inputs) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let layout = &scorer.model().layout;
    let idx = |name: &str| layout.field_index(name).unwrap();
    let single = |names| split(layout, names, false);
    let bags = |names| split(layout, names, true);
    let (c_single, c_bags) = (
        single(scorer.candidate_fields()),
        bags(scorer.candidate_fields()),
    );
    let (r_single, r_bags) = (
        single(scorer.request_fields()),
        bags(scorer.request_fields()),
    );
    let ids: Vec<u32> = (0..inp.n)
        .flat_map(|r| c_single.iter().map(move |n| inp.ids[r][idx(n)][0]))
        .collect();
    let flatten = |name: &str, rows: usize| {
        let mut offsets = vec![0u64];
        let mut all = vec![];
        for r in 0..rows {
            all.extend(&inp.ids[r][idx(name)]);
            offsets.push(all.len() as u64);
        }
        (offsets, all)
    };
    let c_bag_data: Vec<_> = c_bags.iter().map(|n| flatten(n, inp.n)).collect();
    let r_bag_data: Vec<_> = r_bags.iter().map(|n| flatten(n, 1)).collect();
    let c_bag: Vec<Bag> = c_bag_data
        .iter()
        .map(|(o, i)| Bag { offsets: o, ids: i })
        .collect();
    let r_bag: Vec<Bag> = r_bag_data
        .iter()
        .map(|(o, i)| Bag { offsets: o, ids: i })
        .collect();
    let request_ids: Vec<u32> = r_single.iter().map(|n| inp.ids[0][idx(n)][0]).collect();
    let req = Request {
        candidates: inp.n,
        ids: &ids,
        bags: &c_bag,
        dense: &inp.dense,
        dense_stride: layout.dense,
        request_ids: &request_ids,
        request_bags: &r_bag,
    };
    let tasks = scorer.tasks();
    let (mut probs, mut fused) = (vec![f32::NAN; inp.n * tasks], vec![f32::NAN; inp.n]);
    let mut ws = scorer.workspace(1);
    scorer.score(&mut ws, &req, &mut probs, &mut fused)?;
    Ok((probs, fused))
}

fn naive(model: &Model, inp: &Inputs) -> Vec<Vec<f32>> {
    (0..inp.n)
        .map(|r| {
            let ids: Vec<&[u32]> = inp.ids[r].iter().map(|v| v.as_slice()).collect();
            let d = model.layout.dense;
            model.forward_naive(CandidateRef {
                ids: &ids,
                dense: &inp.dense[r * d..(r + 1) * d],
            })
        })
        .collect()
}

fn assert_matches_naive(model: Model, n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let tasks = model.config.tasks.len();
    let inp = inputs(&model.layout, n, seed, true);
    let want = naive(&model, &inp);
    let weights = model.config.fusion_weights();
    let kind = model.config.fusion.kind;
    let scorer = Scorer::new(model).unwrap();
    let (probs, fused) = score(&scorer, &inp).unwrap();
    for r in 0..n {
        for t in 0..tasks {
            let (got, w) = (probs[r * tasks + t], want[r][t]);
            assert!(
                (got - w).abs() <= PROB_TOLERANCE,
                "candidate {r} task {t}: {got} vs naive {w}"
            );
            assert!((0.0..=1.0).contains(&got));
        }
        let f: f32 = match kind {
            FusionKind::Additive => want[r].iter().zip(&weights).map(|(p, w)| p * w).sum(),
            // The product of the conditionals q_t = p_t / p_(t-1), q_1 = p_1.
            FusionKind::Multiplicative => (0..tasks)
                .map(|t| {
                    let prev = if t == 0 { 1.0 } else { want[r][t - 1] };
                    (want[r][t] / prev).powf(weights[t])
                })
                .product(),
        };
        assert!(
            (fused[r] - f).abs() <= 4.0 * PROB_TOLERANCE * f.abs().max(1.0),
            "fused {r}: {} vs {f}",
            fused[r]
        );
    }
    (probs, fused)
}

#[test]
fn scorer_matches_the_naive_forward_for_every_variant() {
    for tasks in [1, 2, 3] {
        for (hidden, logits, monotone) in [
            (true, true, false),
            (false, false, false),
            (true, false, false),
            (false, true, true),
        ] {
            for n in [1, 2, 13, 70] {
                let mut c = small_config(tasks);
                c.residual = Residual {
                    hidden,
                    logits,
                    monotone,
                };
                let model = Model::random(c, small_layout(tasks), 11 + n as u64).unwrap();
                assert_matches_naive(model, n, n as u64);
            }
        }
    }
}

/// A small random model of `kind` (3 tasks, or 2 for the two-task kinds) with the user as a
/// request-level field.
fn kind_model(kind: &str, seed: u64) -> Model {
    let two = resflow::config::ModelKind::from_name(kind)
        .unwrap()
        .two_tasks_only();
    let tasks = if two { 2 } else { 3 };
    let mut c = small_config(tasks).with_model(kind).unwrap();
    c.request_fields = vec!["user".into()];
    Model::random(c, small_layout(tasks), seed).unwrap()
}

#[test]
fn baselines_score_like_their_per_candidate_forward() {
    // Every kind's plan splits its first layers by request and candidate fields; the
    // reference reads the whole concatenation in layout order.
    for kind in resflow::config::ModelKind::NAMES {
        for n in [1, 13, 70] {
            let model = kind_model(kind, 7 + n as u64);
            // The split plan scores what the same model without request fields scores.
            let mut whole = model.clone();
            whole.config.request_fields.clear();
            let (probs, _) = assert_matches_naive(model, n, n as u64);
            let scorer = Scorer::new(whole).unwrap();
            assert!(!scorer.plan().splits_requests());
            let (unsplit, _) =
                score(&scorer, &inputs(&scorer.model().layout, n, n as u64, true)).unwrap();
            let gap = testkit::max_abs_diff(&probs, &unsplit);
            assert!(
                gap <= PROB_TOLERANCE,
                "{kind}, {n} candidates: split vs whole {gap}"
            );
        }
    }
}

/// How far int8 GEMMs may move a probability from the f32 scorer's on these small random
/// models: the largest gap over every kind and size below is 4.0e-3 (the int8 steps are
/// 1/127 of a row's largest input and 1/63 of a column's largest weight, over K of 40-50).
const INT8_PROB_TOLERANCE: f32 = 0.01;

#[test]
fn int8_scores_stay_near_f32_for_every_kind() {
    let mut worst = 0.0f32;
    for kind in resflow::config::ModelKind::NAMES {
        for n in [1, 13, 70] {
            let model = kind_model(kind, 7 + n as u64);
            let f32_scorer = Scorer::new(model.clone()).unwrap();
            let int8 = Scorer::with_precision(model, Precision::Int8).unwrap();
            assert_eq!(f32_scorer.plan().int8_gemms(), 0);
            assert!(int8.plan().int8_gemms() > 0, "{kind}: no GEMM runs in int8");
            assert_eq!(int8.precision(), Precision::Int8);
            let inp = inputs(&int8.model().layout, n, n as u64, true);
            let (want, _) = score(&f32_scorer, &inp).unwrap();
            let (got, fused) = score(&int8, &inp).unwrap();
            assert!(got.iter().chain(&fused).all(|p| p.is_finite()));
            let gap = testkit::max_abs_diff(&got, &want);
            assert!(
                gap <= INT8_PROB_TOLERANCE,
                "{kind}, {n} candidates: int8 vs f32 {gap}"
            );
            worst = worst.max(gap);
        }
    }
    // The int8 path really ran: quantization moved some probability.
    assert!(worst > 0.0, "int8 scores equal f32 bit for bit");
    eprintln!("int8 against f32: largest probability gap {worst:e}");
}

#[test]
fn request_fields_give_the_same_scores_as_per_candidate_fields() {
    let base = Model::random(small_config(2), small_layout(2), 5).unwrap();
    assert_matches_naive(base.clone(), 40, 9);
    let mut split = base.clone();
    split.config.request_fields = vec!["user".into(), "history".into()];
    // "history" differs per candidate in `inputs`, so give every candidate the first one's.
    let mut inp = inputs(&split.layout, 40, 9, true);
    let h = split.layout.field_index("history").unwrap();
    let first = inp.ids[0][h].clone();
    inp.ids.iter_mut().for_each(|c| c[h] = first.clone());
    let want = naive(&split, &inp);
    let scorer = Scorer::new(split).unwrap();
    assert_eq!(scorer.request_fields(), vec!["user", "history"]);
    assert!(scorer.plan().splits_requests());
    let (p2, f2) = score(&scorer, &inp).unwrap();
    for r in 0..40 {
        for t in 0..2 {
            assert!((p2[r * 2 + t] - want[r][t]).abs() <= PROB_TOLERANCE);
        }
    }
    // The same inputs through the model without request fields: the same scores.
    let (p1, f1) = score(&Scorer::new(base).unwrap(), &inp).unwrap();
    assert!(testkit::max_abs_diff(&p1, &p2) <= PROB_TOLERANCE);
    assert!(testkit::max_abs_diff(&f1, &f2) <= 2.0 * PROB_TOLERANCE);
}

#[test]
fn monotone_chain_never_raises_a_later_probability() {
    let mut c = small_config(3);
    c.residual.monotone = true;
    let model = Model::random(c, small_layout(3), 3).unwrap();
    let (probs, _) = assert_matches_naive(model, 50, 4);
    for r in 0..50 {
        assert!(probs[r * 3 + 1] <= probs[r * 3] && probs[r * 3 + 2] <= probs[r * 3 + 1]);
    }
}

#[test]
fn multiplicative_fusion_and_weights() {
    let mut c = small_config(2);
    c.fusion.kind = FusionKind::Multiplicative;
    c.fusion.weights = vec![1.0, 0.5];
    assert_matches_naive(Model::random(c.clone(), small_layout(2), 8).unwrap(), 20, 1);
    c.fusion.kind = FusionKind::Additive;
    c.fusion.weights = vec![1.0, 20.0];
    assert_matches_naive(Model::random(c, small_layout(2), 8).unwrap(), 20, 1);
}

#[test]
fn model_file_round_trips_and_scores_identically() {
    let mut c = small_config(3);
    c.batch_norm = BatchNormMode::Batch;
    c.request_fields = vec!["age".into()];
    let model = Model::random(c, small_layout(3), 21).unwrap();
    let dir = std::env::temp_dir().join(format!("resflow-model-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();
    let back = Model::load(&path).unwrap();
    assert_eq!(back, model);
    let age = model.layout.field_index("age").unwrap();
    let mut inp2 = inputs(&model.layout, 30, 2, true);
    let a = inp2.ids[0][age].clone();
    inp2.ids.iter_mut().for_each(|c| c[age] = a.clone());
    let s1 = Scorer::new(model).unwrap();
    let s2 = Scorer::new(back).unwrap();
    assert!(s2.plan().splits_requests());
    let (loaded, want) = (score(&s2, &inp2).unwrap(), score(&s1, &inp2).unwrap());
    assert_eq!(loaded, want);
    // And both are the model's, not merely each other's.
    let naive = naive(s1.model(), &inp2);
    let flat: Vec<f32> = naive.into_iter().flatten().collect();
    assert!(testkit::max_abs_diff(&loaded.0, &flat) <= PROB_TOLERANCE);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_model_files_are_clear_errors() {
    let model = Model::random(small_config(2), small_layout(2), 1).unwrap();
    let bytes = model.to_bytes().unwrap();
    let err = |b: &[u8]| {
        Model::from_bytes(b, "m.safetensors")
            .unwrap_err()
            .to_string()
    };
    assert!(err(&bytes[..bytes.len() - 7]).contains("m.safetensors"));
    assert!(err(&bytes[..5]).contains("not a safetensors file"));
    assert!(err(b"").contains("not a safetensors file"));
    // Every single-byte truncation point and a few corruptions give an error, not a panic.
    for cut in (0..bytes.len()).step_by(97) {
        assert!(Model::from_bytes(&bytes[..cut], "m").is_err());
    }
    let mut other = bytes.clone();
    let pos = other
        .windows(13)
        .position(|w| w == b"resflow-model")
        .unwrap();
    other[pos] = b'X';
    assert!(err(&other).contains("checksum"));
    // A NaN weight is never written.
    let mut nan = model.clone();
    let (_, bias) = nan
        .tensors
        .iter_mut()
        .find(|(n, _)| n.ends_with("task/0/logit/bias"))
        .unwrap();
    bias.as_mut_slice()[0] = f32::NAN;
    let e = nan.to_bytes().unwrap_err().to_string();
    assert!(e.contains("non-finite") && e.contains("logit/bias"), "{e}");
    let missing =
        Model::load(std::path::Path::new("/nonexistent/dir/model.safetensors")).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("/nonexistent/dir/model.safetensors")
    );
}

#[test]
fn bad_requests_are_clear_errors() {
    let model = Model::random(small_config(2), small_layout(2), 1).unwrap();
    let scorer = Scorer::new(model).unwrap();
    let mut ws = scorer.workspace(4);
    let ids = vec![0u32; 2 * 5];
    let offsets = [0u64, 1, 2];
    let bag_ids = [1u32, 2];
    let bags = [
        Bag {
            offsets: &offsets,
            ids: &bag_ids,
        },
        Bag {
            offsets: &offsets,
            ids: &bag_ids,
        },
    ];
    let dense = vec![0.5f32; 6];
    let good = Request {
        candidates: 2,
        ids: &ids,
        bags: &bags,
        dense: &dense,
        dense_stride: 3,
        request_ids: &[],
        request_bags: &[],
    };
    let (mut p, mut f) = (vec![0.0; 4], vec![0.0; 2]);
    scorer.score(&mut ws, &good, &mut p, &mut f).unwrap();

    let check = |req: Request, p: &mut [f32], needle: &str| {
        let mut ws = scorer.workspace(1);
        let e = scorer
            .score(&mut ws, &req, p, &mut [0.0; 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e} lacks {needle:?}");
    };
    check(good, &mut [0.0; 3], "probabilities");
    check(
        Request {
            ids: &ids[..9],
            ..good
        },
        &mut p,
        "candidate ids",
    );
    let mut far = ids.clone();
    far[7] = 10_000;
    check(
        Request { ids: &far, ..good },
        &mut p,
        "id 10000 is out of range",
    );
    let down = [0u64, 2, 1];
    let bad_bags = [
        Bag {
            offsets: &down,
            ids: &bag_ids,
        },
        bags[1],
    ];
    check(
        Request {
            bags: &bad_bags,
            ..good
        },
        &mut p,
        "never decrease",
    );
    let short = [
        Bag {
            offsets: &offsets[..2],
            ids: &bag_ids,
        },
        bags[1],
    ];
    check(
        Request {
            bags: &short,
            ..good
        },
        &mut p,
        "offsets for 2 rows",
    );
    let big = [5u32, 999];
    let oob = [
        Bag {
            offsets: &offsets,
            ids: &big,
        },
        bags[1],
    ];
    check(Request { bags: &oob, ..good }, &mut p, "out of range");
    check(
        Request {
            bags: &bags[..1],
            ..good
        },
        &mut p,
        "bags",
    );
    check(
        Request {
            dense: &dense[..4],
            ..good
        },
        &mut p,
        "dense floats",
    );
    check(
        Request {
            dense_stride: 2,
            ..good
        },
        &mut p,
        "dense stride",
    );
    let nan = [f32::NAN; 6];
    check(
        Request {
            dense: &nan,
            ..good
        },
        &mut p,
        "NaN",
    );
    check(
        Request {
            request_ids: &[1],
            ..good
        },
        &mut p,
        "request ids",
    );
    // Zero candidates is a valid, empty request.
    let empty = Request {
        candidates: 0,
        ids: &[],
        bags: &[
            Bag {
                offsets: &[0],
                ids: &[],
            },
            Bag {
                offsets: &[0],
                ids: &[],
            },
        ],
        dense: &[],
        ..good
    };
    scorer.score(&mut ws, &empty, &mut [], &mut []).unwrap();
}

#[test]
fn unknown_request_field_is_a_config_error() {
    let mut c = small_config(2);
    c.request_fields = vec!["nope".into()];
    // Refused when the model is made, and when a loaded model names such a field.
    let e = Model::random(c, small_layout(2), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"nope\""), "{e}");
    let mut model = Model::random(small_config(2), small_layout(2), 1).unwrap();
    model.config.request_fields = vec!["nope".into()];
    let e = Scorer::new(model).unwrap_err().to_string();
    assert!(e.contains("\"nope\""), "{e}");
}
