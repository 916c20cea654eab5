//! The ONNX graph as a [`Graph`]: every op a head records becomes ONNX nodes, every
//! parameter it names an initializer. So the heads' one forward pass exports every model
//! kind, and a kind added later exports with no code here.
//!
//! ```text
//! Graph op            ONNX nodes                                 as in the serving plan
//! linear(x', W, b)    Gemm(x_in, diag(s) W, t W + b)             input BatchNorm folded, rows
//!                                                                permuted to the graph's input order
//! linear(h, W, b)     Gemm(h, W, b)
//! activation          PRelu(h, slope) | Relu(h)
//! batch_norm(h)       Mul(h, scale), Add(., shift)               (nothing for mode `none`)
//! add, scale          Add, Mul(x, c)
//! min_zero, relu      Min(x, 0), Relu
//! sigmoid, softmax    Sigmoid, Softmax(axis = 1)
//! mix(xs, gate)       sum_k Mul(Gather(gate, [k], axis 1), xs[k])
//! row_dot(a, b)       ReduceSum(Mul(a, b), axes [1])
//! concat              Concat(axis = 1)
//! product_logit(a,b)  L = -softplus(-a) - softplus(-b); min(L - log(max(1 - e^L, tiny)), a, b)
//! sum                 refused: a training loss has no place in a serving graph
//! ```
//!
//! The input `x` of the head is the concatenation of the fields' embeddings and the dense
//! features, normalised by the input BatchNorm. The graph builds it in its own column order
//! (single-valued fields, then bags, then dense: see `inputs.rs`), never in layout order:
//! a linear map that reads it gets its weight rows permuted (and the BatchNorm folded in),
//! which costs nothing at run time. Only an op that reads `x` otherwise (an expert without
//! hidden layers mixed by a gate, say) materialises it in layout order, once.

use std::collections::HashMap;

use model::config::Activation;
use model::graph::op_error;
use model::layers::{BatchNorm, Linear, ParamRef};
use model::{Graph, Model, ModelError, Node, bn_scale_shift};
use tensor::Matrix;

use crate::proto::{Attribute, Node as OnnxNode, Tensor};

/// What a recorded value is.
#[derive(Debug, Clone)]
enum Kind {
    /// The concatenated input, in the graph's column order.
    Input,
    /// The input after the input BatchNorm (`scale x + shift` per layout column), not yet
    /// computed: folded into its linear readers.
    InputBn { scale: Vec<f32>, shift: Vec<f32> },
    /// A computed ONNX value.
    Value(String),
}

#[derive(Debug, Clone)]
struct Value {
    kind: Kind,
    cols: usize,
}

/// Nodes and initializers of the graph being recorded, with unique names.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub nodes: Vec<OnnxNode>,
    pub initializers: Vec<Tensor>,
    names: usize,
}

impl Builder {
    /// A name not used before, from `hint`.
    pub fn name(&mut self, hint: &str) -> String {
        self.fresh(hint)
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.names += 1;
        format!("{hint}:{}", self.names)
    }

    /// Appends `op(inputs)` with one output, named after the op; returns the output.
    pub fn node(
        &mut self,
        op: &'static str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> String {
        let out = self.fresh(op);
        self.nodes.push(OnnxNode {
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.clone()],
            name: out.clone(),
            attributes,
        });
        out
    }

    /// Appends `op(inputs)` with its one output called `out` (a graph output).
    pub fn node_named(
        &mut self,
        op: &'static str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
        out: &str,
    ) {
        let name = self.fresh(op);
        self.nodes.push(OnnxNode {
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.to_string()],
            name,
            attributes,
        });
    }

    /// A float constant of shape `dims`, named `name` (made unique).
    pub fn f32(&mut self, name: &str, dims: Vec<i64>, data: &[f32]) -> String {
        let name = self.fresh(name);
        self.initializers
            .push(Tensor::f32(name.clone(), dims, data));
        name
    }

    /// An int64 constant of shape `dims`.
    pub fn i64(&mut self, name: &str, dims: Vec<i64>, data: &[i64]) -> String {
        let name = self.fresh(name);
        self.initializers
            .push(Tensor::i64(name.clone(), dims, data));
        name
    }

    /// A float scalar (shape `[]`).
    pub fn scalar(&mut self, v: f32) -> String {
        self.f32("const", vec![], &[v])
    }
}

/// The recording graph over one model.
pub(crate) struct Recorder<'a> {
    model: &'a Model,
    pub b: Builder,
    values: Vec<Value>,
    /// The input concatenation (graph column order) as an ONNX value.
    input: String,
    /// `order[j]`: the graph column holding layout column `j` of the input.
    order: Vec<usize>,
    /// The weights already written, by parameter (and whether folded with the input
    /// BatchNorm): a weight two ops read is stored once.
    weights: HashMap<(usize, bool), (String, String)>,
    /// The input materialised in layout order, once an op other than a linear map reads it.
    materialised: Option<String>,
    /// The normalised input materialised in layout order, by node.
    normalised: HashMap<usize, String>,
}

impl<'a> Recorder<'a> {
    /// A recorder whose input concatenation is the value `input` of `cols` columns, its
    /// layout column `j` at graph column `order[j]`.
    pub fn new(model: &'a Model, b: Builder, input: String, order: Vec<usize>) -> Self {
        Self {
            model,
            b,
            values: Vec::new(),
            input,
            order,
            weights: HashMap::new(),
            materialised: None,
            normalised: HashMap::new(),
        }
    }

    /// The node standing for the input concatenation.
    pub fn input_node(&mut self) -> Node {
        let cols = self.order.len();
        self.push(Kind::Input, cols)
    }

    fn push(&mut self, kind: Kind, cols: usize) -> Node {
        self.values.push(Value { kind, cols });
        Node(self.values.len() as u32 - 1)
    }

    fn value(&mut self, name: String, cols: usize) -> Node {
        self.push(Kind::Value(name), cols)
    }

    fn cols(&self, x: Node) -> usize {
        self.values[x.index()].cols
    }

    fn param(&self, p: ParamRef) -> &'a Matrix {
        &self.model.tensors[p.0].1
    }

    fn param_name(&self, p: ParamRef) -> &'a str {
        &self.model.tensors[p.0].0
    }

    /// The ONNX value of `x`, materialising the input in layout order when `x` is the
    /// input (or the normalised input).
    pub fn tensor(&mut self, x: Node) -> String {
        match self.values[x.index()].kind.clone() {
            Kind::Value(name) => name,
            Kind::Input => self.layout_input(),
            Kind::InputBn { scale, shift } => {
                if let Some(name) = self.normalised.get(&x.index()) {
                    return name.clone();
                }
                let input = self.layout_input();
                let name = self.materialised_bn(&input, &scale, &shift);
                self.normalised.insert(x.index(), name.clone());
                name
            }
        }
    }

    /// The input in layout order: one Gather of its columns.
    fn layout_input(&mut self) -> String {
        if let Some(x) = &self.materialised {
            return x.clone();
        }
        let idx: Vec<i64> = self.order.iter().map(|&c| c as i64).collect();
        let idx = self
            .b
            .i64("input/layout_order", vec![idx.len() as i64], &idx);
        let input = self.input.clone();
        let x = self
            .b
            .node("Gather", &[&input, &idx], vec![Attribute::Int("axis", 1)]);
        self.materialised = Some(x.clone());
        x
    }

    fn materialised_bn(&mut self, x: &str, scale: &[f32], shift: &[f32]) -> String {
        let n = scale.len() as i64;
        let s = self.b.f32("input_bn/scale", vec![n], scale);
        let t = self.b.f32("input_bn/shift", vec![n], shift);
        let m = self.b.node("Mul", &[x, &s], vec![]);
        self.b.node("Add", &[&m, &t], vec![])
    }

    fn bn(&self, bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
        let c = &self.model.config;
        let row = |p: ParamRef| self.param(p).to_vec();
        bn_scale_shift(
            c.batch_norm,
            c.bn_epsilon,
            &row(bn.gamma),
            &row(bn.beta),
            &row(bn.mean),
            &row(bn.var),
        )
    }

    fn unary(&mut self, op: &'static str, x: Node) -> Node {
        let cols = self.cols(x);
        let t = self.tensor(x);
        let out = self.b.node(op, &[&t], vec![]);
        self.value(out, cols)
    }

    fn same(&self, op: &'static str, a: Node, b: Node) -> Result<(), ModelError> {
        if self.cols(a) != self.cols(b) {
            return Err(op_error(op, "operands of different widths"));
        }
        Ok(())
    }

    fn binary(&mut self, op: &'static str, a: Node, b: Node) -> Result<Node, ModelError> {
        self.same(op, a, b)?;
        let cols = self.cols(a);
        let (ta, tb) = (self.tensor(a), self.tensor(b));
        let out = self.b.node(op, &[&ta, &tb], vec![]);
        Ok(self.value(out, cols))
    }

    /// `softplus(x) = max(x, 0) + ln(1 + e^-|x|)`, written out so that no runtime's own
    /// (possibly overflowing) softplus is relied on.
    fn softplus(&mut self, x: &str) -> String {
        let a = self.b.node("Abs", &[x], vec![]);
        let na = self.b.node("Neg", &[&a], vec![]);
        let e = self.b.node("Exp", &[&na], vec![]);
        let one = self.b.scalar(1.0);
        let e1 = self.b.node("Add", &[&e, &one], vec![]);
        let l = self.b.node("Log", &[&e1], vec![]);
        let r = self.b.node("Relu", &[x], vec![]);
        self.b.node("Add", &[&r, &l], vec![])
    }
}

impl Graph for Recorder<'_> {
    fn linear(&mut self, x: Node, l: &Linear) -> Result<Node, ModelError> {
        let w = self.param(l.weight);
        if w.rows() != self.cols(x) {
            return Err(op_error(
                "linear",
                format!("{} inputs, weight {:?}", self.cols(x), w.shape()),
            ));
        }
        let bias = match l.bias {
            Some(b) => self.param(b).to_vec(),
            None => vec![0.0; w.cols()],
        };
        let (rows, cols) = (w.rows(), w.cols());
        let kind = self.values[x.index()].kind.clone();
        let (src, folded) = match &kind {
            Kind::Input | Kind::InputBn { .. } => (self.input.clone(), true),
            Kind::Value(name) => (name.clone(), false),
        };
        let key = (l.weight.0, folded);
        let (wname, bname) = match (self.weights.get(&key), l.bias) {
            (Some(names), Some(_)) => names.clone(),
            _ => {
                let (weight, bias) = match &kind {
                    Kind::Input => (permute_rows(w, &self.order), bias),
                    Kind::InputBn { scale, shift } => {
                        // (s x + t) W + b = x (diag(s) W) + (t W + b), as the serving plan folds it.
                        let mut b = bias;
                        for (j, bj) in b.iter_mut().enumerate() {
                            *bj += (0..rows).map(|i| shift[i] * w.get(i, j)).sum::<f32>();
                        }
                        let scaled = Matrix::from_fn(rows, cols, |i, j| scale[i] * w.get(i, j));
                        (permute_rows(&scaled, &self.order), b)
                    }
                    Kind::Value(_) => (w.clone(), bias),
                };
                let base = self.param_name(l.weight).trim_end_matches("/weight");
                let suffix = if folded { "/folded" } else { "" };
                let wname = self.b.f32(
                    &format!("{base}/weight{suffix}"),
                    vec![rows as i64, cols as i64],
                    &weight.to_vec(),
                );
                let bname = self
                    .b
                    .f32(&format!("{base}/bias{suffix}"), vec![cols as i64], &bias);
                if l.bias.is_some() {
                    self.weights.insert(key, (wname.clone(), bname.clone()));
                }
                (wname, bname)
            }
        };
        let out = self.b.node("Gemm", &[&src, &wname, &bname], vec![]);
        Ok(self.value(out, cols))
    }

    fn activation(&mut self, x: Node, slope: ParamRef) -> Result<Node, ModelError> {
        let cols = self.cols(x);
        match self.model.config.activation {
            Activation::Relu => Ok(self.unary("Relu", x)),
            Activation::Prelu => {
                let s = self.param(slope);
                if s.cols() != cols {
                    return Err(op_error("activation", "one slope per column expected"));
                }
                let name = self.param_name(slope).to_string();
                let s = self.b.f32(&name, vec![cols as i64], &s.to_vec());
                let t = self.tensor(x);
                let out = self.b.node("PRelu", &[&t, &s], vec![]);
                Ok(self.value(out, cols))
            }
        }
    }

    fn batch_norm(&mut self, x: Node, bn: &BatchNorm) -> Result<Node, ModelError> {
        let (scale, shift) = self.bn(bn);
        let cols = self.cols(x);
        if scale.len() != cols {
            return Err(op_error(
                "batch_norm",
                "channels differ from the input's width",
            ));
        }
        if matches!(self.values[x.index()].kind, Kind::Input) {
            return Ok(self.push(Kind::InputBn { scale, shift }, cols));
        }
        if scale.iter().all(|&s| s == 1.0) && shift.iter().all(|&t| t == 0.0) {
            // Mode `none`: the identity.
            return Ok(x);
        }
        let base = self
            .param_name(bn.gamma)
            .trim_end_matches("/gamma")
            .to_string();
        let s = self
            .b
            .f32(&format!("{base}/scale"), vec![cols as i64], &scale);
        let t = self
            .b
            .f32(&format!("{base}/shift"), vec![cols as i64], &shift);
        let v = self.tensor(x);
        let m = self.b.node("Mul", &[&v, &s], vec![]);
        let out = self.b.node("Add", &[&m, &t], vec![]);
        Ok(self.value(out, cols))
    }

    fn add(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.binary("Add", a, b)
    }

    fn scale(&mut self, x: Node, c: f32) -> Result<Node, ModelError> {
        let cols = self.cols(x);
        let t = self.tensor(x);
        let c = self.b.scalar(c);
        let out = self.b.node("Mul", &[&t, &c], vec![]);
        Ok(self.value(out, cols))
    }

    fn min_zero(&mut self, x: Node) -> Result<Node, ModelError> {
        let cols = self.cols(x);
        let t = self.tensor(x);
        let zero = self.b.scalar(0.0);
        let out = self.b.node("Min", &[&t, &zero], vec![]);
        Ok(self.value(out, cols))
    }

    fn relu(&mut self, x: Node) -> Result<Node, ModelError> {
        Ok(self.unary("Relu", x))
    }

    fn sigmoid(&mut self, x: Node) -> Result<Node, ModelError> {
        Ok(self.unary("Sigmoid", x))
    }

    fn softmax(&mut self, x: Node) -> Result<Node, ModelError> {
        let cols = self.cols(x);
        let t = self.tensor(x);
        let out = self
            .b
            .node("Softmax", &[&t], vec![Attribute::Int("axis", 1)]);
        Ok(self.value(out, cols))
    }

    fn mix(&mut self, xs: &[Node], gate: Node) -> Result<Node, ModelError> {
        let first = *xs.first().ok_or_else(|| op_error("mix", "no inputs"))?;
        for &x in xs {
            self.same("mix", first, x)?;
        }
        if self.cols(gate) != xs.len() {
            return Err(op_error("mix", "the gate needs one column per input"));
        }
        let cols = self.cols(first);
        let g = self.tensor(gate);
        let mut acc: Option<String> = None;
        for (k, &x) in xs.iter().enumerate() {
            let idx = self.b.i64("mix/column", vec![1], &[k as i64]);
            let col = self
                .b
                .node("Gather", &[&g, &idx], vec![Attribute::Int("axis", 1)]);
            let v = self.tensor(x);
            let term = self.b.node("Mul", &[&col, &v], vec![]);
            acc = Some(match acc {
                None => term,
                Some(a) => self.b.node("Add", &[&a, &term], vec![]),
            });
        }
        Ok(self.value(acc.expect("at least one input"), cols))
    }

    fn row_dot(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.same("row_dot", a, b)?;
        let (ta, tb) = (self.tensor(a), self.tensor(b));
        let p = self.b.node("Mul", &[&ta, &tb], vec![]);
        let axes = self.b.i64("axes", vec![1], &[1]);
        let out = self.b.node(
            "ReduceSum",
            &[&p, &axes],
            vec![Attribute::Int("keepdims", 1)],
        );
        Ok(self.value(out, 1))
    }

    fn concat(&mut self, xs: &[Node]) -> Result<Node, ModelError> {
        if xs.is_empty() {
            return Err(op_error("concat", "no inputs"));
        }
        let cols = xs.iter().map(|&x| self.cols(x)).sum();
        let names: Vec<String> = xs.iter().map(|&x| self.tensor(x)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let out = self
            .b
            .node("Concat", &refs, vec![Attribute::Int("axis", 1)]);
        Ok(self.value(out, cols))
    }

    fn product_logit(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        // logit(sigmoid(a) sigmoid(b)) = L - ln(1 - e^L), L = ln sigmoid(a) + ln sigmoid(b)
        // = -softplus(-a) - softplus(-b); never above min(a, b) (as tensor::ops::product_logit).
        self.same("product_logit", a, b)?;
        let cols = self.cols(a);
        let (ta, tb) = (self.tensor(a), self.tensor(b));
        let na = self.b.node("Neg", &[&ta], vec![]);
        let nb = self.b.node("Neg", &[&tb], vec![]);
        let (sa, sb) = (self.softplus(&na), self.softplus(&nb));
        let s = self.b.node("Add", &[&sa, &sb], vec![]);
        let l = self.b.node("Neg", &[&s], vec![]);
        let e = self.b.node("Exp", &[&l], vec![]);
        let one = self.b.scalar(1.0);
        let rest = self.b.node("Sub", &[&one, &e], vec![]);
        let tiny = self.b.scalar(f32::MIN_POSITIVE);
        let rest = self.b.node("Max", &[&rest, &tiny], vec![]);
        let lr = self.b.node("Log", &[&rest], vec![]);
        let z = self.b.node("Sub", &[&l, &lr], vec![]);
        let out = self.b.node("Min", &[&z, &ta, &tb], vec![]);
        Ok(self.value(out, cols))
    }

    fn sum(&mut self, _x: Node) -> Result<Node, ModelError> {
        Err(op_error(
            "sum",
            "a training loss has no place in a serving graph",
        ))
    }

    fn list(&mut self) -> Vec<Node> {
        Vec::new()
    }

    fn recycle(&mut self, _list: Vec<Node>) {}
}

/// `W` with its rows moved to the graph's input order: row `j` (layout column `j`) becomes
/// row `order[j]`.
fn permute_rows(w: &Matrix, order: &[usize]) -> Matrix {
    let mut inverse = vec![0usize; order.len()];
    for (j, &c) in order.iter().enumerate() {
        inverse[c] = j;
    }
    Matrix::from_fn(w.rows(), w.cols(), |i, j| w.get(inverse[i], j))
}
