//! The plain reference forward pass: every op of [`Graph`] as a naive loop over a row-major
//! matrix, one op at a time, every BatchNorm applied as its own step, no fusion, no split
//! of the first layer. It is what the serving plan (and the training tape in inference
//! mode) are tested against, and the place to read a model's arithmetic in code.

use tensor::Matrix;

use crate::config::{Activation, ModelConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node, op_error};
use crate::layers::{BatchNorm, Linear, ParamRef};
use crate::layout::{InputLayout, Pooling};
use crate::model::{Model, bn_scale_shift};

/// The inputs of one candidate, for the reference forward pass.
#[derive(Debug, Clone, Copy)]
pub struct CandidateRef<'a> {
    /// One id list per field, in layout order (length 1 for a single-valued field).
    pub ids: &'a [&'a [u32]],
    /// The dense features.
    pub dense: &'a [f32],
}

/// `[emb(field 0) | ... | emb(field F-1) | dense]` for one candidate: single-valued fields
/// look up one row, bags sum their rows (or average them), an empty bag gives zeros. Ids
/// must be in range.
pub fn concat_inputs(
    embeddings: &[Matrix],
    layout: &InputLayout,
    dim: usize,
    c: CandidateRef<'_>,
) -> Vec<f32> {
    let mut x = Vec::with_capacity(layout.input_width(dim));
    for ((table, field), ids) in embeddings.iter().zip(&layout.fields).zip(c.ids) {
        let mut v = vec![0.0f32; dim];
        for &id in ids.iter() {
            v.iter_mut()
                .zip(table.row(id as usize))
                .for_each(|(a, b)| *a += b);
        }
        if field.bag == Some(Pooling::Mean) && !ids.is_empty() {
            v.iter_mut().for_each(|a| *a /= ids.len() as f32);
        }
        x.extend(v);
    }
    x.extend_from_slice(c.dense);
    x
}

/// A matrix of the reference graph.
#[derive(Debug, Clone)]
struct Value {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

/// The reference [`Graph`] over one model's tensors, in inference mode.
struct Reference<'a> {
    config: &'a ModelConfig,
    tensors: &'a [(String, Matrix)],
    values: Vec<Value>,
}

impl Reference<'_> {
    fn push(&mut self, rows: usize, cols: usize, data: Vec<f32>) -> Node {
        self.values.push(Value { rows, cols, data });
        Node(self.values.len() as u32 - 1)
    }

    fn get(&self, x: Node) -> &Value {
        &self.values[x.index()]
    }

    fn param(&self, p: ParamRef) -> &Matrix {
        &self.tensors[p.0].1
    }

    fn map(&mut self, x: Node, f: impl Fn(f32) -> f32) -> Node {
        let v = self.get(x).clone();
        let data = v.data.iter().map(|&a| f(a)).collect();
        self.push(v.rows, v.cols, data)
    }

    fn zip(
        &mut self,
        op: &'static str,
        a: Node,
        b: Node,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<Node, ModelError> {
        let (va, vb) = (self.get(a), self.get(b));
        if (va.rows, va.cols) != (vb.rows, vb.cols) {
            return Err(op_error(op, "operands of different shapes"));
        }
        let data = va
            .data
            .iter()
            .zip(&vb.data)
            .map(|(&x, &y)| f(x, y))
            .collect();
        let (r, c) = (va.rows, va.cols);
        Ok(self.push(r, c, data))
    }
}

fn sigmoid(z: f32) -> f32 {
    (1.0 / (1.0 + (-(z as f64)).exp())) as f32
}

impl Graph for Reference<'_> {
    fn linear(&mut self, x: Node, l: &Linear) -> Result<Node, ModelError> {
        let v = self.get(x);
        let w = self.param(l.weight);
        if w.rows() != v.cols {
            return Err(op_error(
                "linear",
                format!("{} inputs, weight {:?}", v.cols, w.shape()),
            ));
        }
        let (n, out) = (v.rows, w.cols());
        let mut data = vec![0.0f32; n * out];
        for r in 0..n {
            for j in 0..out {
                let mut s = 0.0f32;
                for i in 0..v.cols {
                    s += v.data[r * v.cols + i] * w.get(i, j);
                }
                if let Some(b) = l.bias {
                    s += self.param(b).get(0, j);
                }
                data[r * out + j] = s;
            }
        }
        Ok(self.push(n, out, data))
    }

    fn activation(&mut self, x: Node, slope: ParamRef) -> Result<Node, ModelError> {
        let v = self.get(x).clone();
        let prelu = self.config.activation == Activation::Prelu;
        let s = self.param(slope);
        let data = v
            .data
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                if a > 0.0 {
                    a
                } else if prelu {
                    s.get(0, i % v.cols) * a
                } else {
                    0.0
                }
            })
            .collect();
        Ok(self.push(v.rows, v.cols, data))
    }

    fn batch_norm(&mut self, x: Node, bn: &BatchNorm) -> Result<Node, ModelError> {
        let row = |p: ParamRef| self.param(p).to_vec();
        let (scale, shift) = bn_scale_shift(
            self.config.batch_norm,
            self.config.bn_epsilon,
            &row(bn.gamma),
            &row(bn.beta),
            &row(bn.mean),
            &row(bn.var),
        );
        let v = self.get(x).clone();
        let data = v
            .data
            .iter()
            .enumerate()
            .map(|(i, &a)| scale[i % v.cols] * a + shift[i % v.cols])
            .collect();
        Ok(self.push(v.rows, v.cols, data))
    }

    fn add(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.zip("add", a, b, |x, y| x + y)
    }

    fn scale(&mut self, x: Node, c: f32) -> Result<Node, ModelError> {
        Ok(self.map(x, |a| c * a))
    }

    fn min_zero(&mut self, x: Node) -> Result<Node, ModelError> {
        Ok(self.map(x, |a| a.min(0.0)))
    }

    fn relu(&mut self, x: Node) -> Result<Node, ModelError> {
        Ok(self.map(x, |a| a.max(0.0)))
    }

    fn sigmoid(&mut self, x: Node) -> Result<Node, ModelError> {
        Ok(self.map(x, sigmoid))
    }

    fn softmax(&mut self, x: Node) -> Result<Node, ModelError> {
        let v = self.get(x).clone();
        let mut data = v.data.clone();
        for row in data.chunks_mut(v.cols.max(1)) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f64> = row.iter().map(|&a| ((a - m) as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            for (o, e) in row.iter_mut().zip(e) {
                *o = (e / s) as f32;
            }
        }
        Ok(self.push(v.rows, v.cols, data))
    }

    fn mix(&mut self, xs: &[Node], gate: Node) -> Result<Node, ModelError> {
        let g = self.get(gate).clone();
        let first = self
            .get(*xs.first().ok_or_else(|| op_error("mix", "no inputs"))?)
            .clone();
        if g.cols != xs.len() || g.rows != first.rows {
            return Err(op_error("mix", "the gate needs one column per input"));
        }
        let mut data = vec![0.0f32; first.rows * first.cols];
        for (k, &x) in xs.iter().enumerate() {
            let v = self.get(x);
            if (v.rows, v.cols) != (first.rows, first.cols) {
                return Err(op_error("mix", "inputs of different shapes"));
            }
            for r in 0..v.rows {
                for c in 0..v.cols {
                    data[r * v.cols + c] += g.data[r * g.cols + k] * v.data[r * v.cols + c];
                }
            }
        }
        Ok(self.push(first.rows, first.cols, data))
    }

    fn row_dot(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        let p = self.zip("row_dot", a, b, |x, y| x * y)?;
        let v = self.get(p).clone();
        let data = v
            .data
            .chunks(v.cols.max(1))
            .map(|r| r.iter().sum())
            .collect();
        Ok(self.push(v.rows, 1, data))
    }

    fn concat(&mut self, xs: &[Node]) -> Result<Node, ModelError> {
        let rows = self
            .get(*xs.first().ok_or_else(|| op_error("concat", "no inputs"))?)
            .rows;
        if xs.iter().any(|&x| self.get(x).rows != rows) {
            return Err(op_error("concat", "inputs of different row counts"));
        }
        let cols: usize = xs.iter().map(|&x| self.get(x).cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for &x in xs {
                let v = self.get(x);
                data.extend_from_slice(&v.data[r * v.cols..(r + 1) * v.cols]);
            }
        }
        Ok(self.push(rows, cols, data))
    }

    fn product_logit(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.zip("product_logit", a, b, tensor::ops::product_logit)
    }

    fn sum(&mut self, x: Node) -> Result<Node, ModelError> {
        let s: f32 = self.get(x).data.iter().sum();
        Ok(self.push(1, 1, vec![s]))
    }

    fn list(&mut self) -> Vec<Node> {
        Vec::new()
    }

    fn recycle(&mut self, _list: Vec<Node>) {}
}

impl Model {
    /// Probabilities of every task for the rows of `x` (`rows x input width`, the
    /// concatenated inputs in layout order), `rows x tasks` row-major, computed the plain way.
    pub fn forward_reference(&self, x: &[f32], rows: usize) -> Result<Vec<f32>, ModelError> {
        let net = self.net()?;
        let width = self.layout.input_width(self.config.embedding_dim);
        if x.len() != rows * width {
            return Err(ModelError::Request(format!(
                "{} inputs for {rows} rows of {width}",
                x.len()
            )));
        }
        let mut g = Reference {
            config: &self.config,
            tensors: &self.tensors,
            values: Vec::new(),
        };
        let input = g.push(rows, width, x.to_vec());
        let mut logits = Vec::new();
        net.forward(&mut g, input, &mut logits)?;
        let tasks = logits.len();
        let mut probs = vec![0.0f32; rows * tasks];
        for (t, &z) in logits.iter().enumerate() {
            for (r, &v) in g.get(z).data.iter().enumerate() {
                probs[r * tasks + t] = sigmoid(v);
            }
        }
        Ok(probs)
    }

    /// Probabilities of every task for one candidate, the plain way (see
    /// [`Model::forward_reference`]). Ids must be in range; panics on a model that does not
    /// validate.
    pub fn forward_naive(&self, c: CandidateRef<'_>) -> Vec<f32> {
        let x = concat_inputs(&self.embeddings, &self.layout, self.config.embedding_dim, c);
        self.forward_reference(&x, 1).expect("a valid model")
    }
}
