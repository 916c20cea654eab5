//! The path no present model kind takes: an op other than a linear map reading the
//! normalised input, which the graph then materialises in layout order (the folded,
//! permuted weights of a linear reader must agree with it).

use model::layers::{Linear, ParamRef};
use model::models::Head;
use model::{
    CandidateRef, Field, Graph, InputLayout, Model, ModelConfig, ModelError, Net, Node, Pooling,
    bn_scale_shift, concat_inputs,
};
use tensor::Matrix;
use tract_onnx::prelude::*;

/// Two logits of one linear map: one reading `x'` (folded), one reading `0.5 x' + 0.5 x'`
/// (materialised).
#[derive(Debug)]
struct TwoWays {
    w: Linear,
}

impl Head for TwoWays {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        logits.push(g.linear(x, &self.w)?);
        let h = g.scale(x, 0.5)?;
        let h = g.add(h, h)?;
        logits.push(g.linear(h, &self.w)?);
        Ok(())
    }
}

#[test]
fn an_input_read_by_other_ops_is_materialised_in_layout_order() {
    let field = |name: &str, vocab: u32, bag| Field {
        name: name.into(),
        vocab,
        bag,
    };
    let layout = InputLayout {
        fields: vec![
            field("a", 9, None),
            field("bag", 11, Some(Pooling::Mean)),
            field("b", 5, None),
        ],
        dense: 2,
        tasks: vec!["click".into(), "conversion".into()],
    };
    let config = ModelConfig {
        embedding_dim: 4,
        batch_norm: model::config::BatchNormMode::Batch,
        ..ModelConfig::default()
    };
    let mut model = Model::random(config, layout.clone(), 3).unwrap();
    let input_bn = model.net().unwrap().input_bn;
    let width = layout.input_width(4);
    let mut rng = model::rng::SplitMix64::new(9);
    model.tensors.push((
        "test/weight".into(),
        Matrix::from_fn(width, 1, |_, _| rng.uniform(1.0)),
    ));
    let w = Linear {
        weight: ParamRef(model.tensors.len() - 1),
        bias: None,
    };
    let net = Net {
        input_bn,
        head: Box::new(TwoWays { w }),
    };
    let bytes = crate::export_net(&model, &net).unwrap();
    let graph = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();

    // (id of a, the bag's ids, id of b, dense features)
    type Cand<'a> = (u32, &'a [u32], u32, [f32; 2]);
    let cands: [Cand<'_>; 3] = [
        (0, &[], 4, [0.5, -1.0]),
        (8, &[3, 10, 3], 0, [2.0, 0.0]),
        (2, &[7], 1, [-0.25, 1.5]),
    ];
    let (l, n) = (3, cands.len());
    let mut bag = vec![0i64; n * l];
    for (r, c) in cands.iter().enumerate() {
        for (k, &id) in c.1.iter().enumerate() {
            bag[r * l + k] = id as i64;
        }
    }
    let ids = |f: fn(&Cand<'_>) -> u32| -> TValue {
        tensor1(&cands.iter().map(|c| f(c) as i64).collect::<Vec<_>>()).into()
    };
    let inputs = tvec![
        ids(|c| c.0),
        tract_ndarray::Array2::from_shape_vec((n, l), bag)
            .unwrap()
            .into_tensor()
            .into(),
        tensor1(&cands.iter().map(|c| c.1.len() as i64).collect::<Vec<_>>()).into(),
        ids(|c| c.2),
        tract_ndarray::Array2::from_shape_vec((n, 2), cands.iter().flat_map(|c| c.3).collect())
            .unwrap()
            .into_tensor()
            .into(),
    ];
    let out = graph.run(inputs).unwrap();
    let p: Vec<f32> = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();

    // The plain computation: x in layout order, BN_in, one dot product, a sigmoid.
    let row = |name: &str| model.tensor(&format!("input_bn/{name}")).unwrap().to_vec();
    let c = &model.config;
    let (scale, shift) = bn_scale_shift(
        c.batch_norm,
        c.bn_epsilon,
        &row("gamma"),
        &row("beta"),
        &row("running_mean"),
        &row("running_var"),
    );
    let weight = model.tensors.last().unwrap().1.to_vec();
    for (r, cand) in cands.iter().enumerate() {
        let (a, b) = ([cand.0], [cand.2]);
        let ids: [&[u32]; 3] = [&a, cand.1, &b];
        let x = concat_inputs(
            &model.embeddings,
            &layout,
            4,
            CandidateRef {
                ids: &ids,
                dense: &cand.3,
            },
        );
        let z: f64 = (0..width)
            .map(|j| ((scale[j] * x[j] + shift[j]) * weight[j]) as f64)
            .sum();
        let want = (1.0 / (1.0 + (-z).exp())) as f32;
        for t in 0..2 {
            let gap = (p[r * 2 + t] - want).abs();
            assert!(
                gap <= tensor::tolerance::APPROXIMATE,
                "candidate {r}, logit {t}: {} against {want}",
                p[r * 2 + t]
            );
        }
    }
}
