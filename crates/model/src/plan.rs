//! The serving plan: a model's forward pass compiled, once, into a list of steps over
//! preallocated buffers.
//!
//! The head's forward pass (the same code that trains) is recorded on a [`Graph`] that
//! only notes each op; then the recording is compiled:
//!
//! ```text
//! record:   x -> BN_in -> dense -> dense -> add -> linear -> ...      (every model kind)
//! compile:  1. BN_in folded into every linear map that reads it:
//!              (s x + t) W + b = x (diag(s) W) + (t W + b)
//!           2. each hidden layer one GEMM with a fused epilogue:
//!              y = x W + b, then y <- scale * prelu(y) + shift  in one pass
//!              (BatchNorm at inference is a per-column scale and shift)
//!           3. every linear map that reads the input concatenation split by rows of W:
//!              x W = x_req W_req + x_cand W_cand; the request part (fields the same for
//!              every candidate, `request_fields`) is one row, computed once per request
//!              and added as the bias of the candidates' GEMM
//!           4. a residual add in place when one operand has no other reader
//!           5. GEMMs that read the same operand (both towers' first layers read the
//!              input) merged into one, W = [W_1 | W_2], when the merged packed weights
//!              stay within MERGE_BYTES: the operand is read once per block and the
//!              micro-kernel runs longer on it; the epilogue runs on the merged rows and
//!              each GEMM's columns are then copied to its own buffer
//!           6. every weight matrix packed once into the micro-kernel's panel order; with
//!              Precision::Int8, a GEMM at least INT8_MIN_COLS wide is packed in int8
//!              instead (a byte per weight, which the merge budget of 5 counts), and its
//!              operand is quantized per row before each block's product (precision.rs)
//! run:      the request rows once; then the steps in order on blocks of BLOCK_ROWS
//!           candidates, on a workspace's buffers (no allocation once warm)
//! ```
//!
//! Every step works row by row (a GEMM, a per-column epilogue, a softmax over a row), so
//! the candidates can go through the whole plan a block at a time: a block's gathered
//! input and activations then stay in L1 and L2 from one layer to the next instead of
//! making a round trip to L3 for each step, and the packed weights are read from L2 by
//! every block.
//!
//! The hidden BatchNorm cannot be folded into the next layer in general: ResFlow's
//! residual link adds the previous task's output *after* it, so the next layer sees
//! `scale a_t + shift + o_(t-1)`, and no change of W scales `a_t` without `o_(t-1)`.

use tensor::{
    GemmScratch, MatMut, MatRef, Matrix, PackedB, PackedQ8, QuantRows, Tier, gemm_packed, gemm_q8,
    gemm_with, ops,
};

use crate::config::Activation;
use crate::error::ModelError;
use crate::graph::{Graph, Node, op_error};
use crate::layers::{BatchNorm, Dense, Linear, ParamRef};
use crate::model::{Model, bn_scale_shift};
use crate::precision::{INT8_MIN_COLS, Precision};

/// What a recorded op computes.
#[derive(Debug, Clone)]
enum Kind {
    /// The concatenated input (never materialised: the scorer gathers it in two parts).
    Input,
    /// `scale x + shift` of the input: the input BatchNorm, folded into its readers.
    InputBn {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// `x W + b`, then `scale * prelu(.) + shift` when `epilogue` is given.
    Gemm {
        weight: Matrix,
        bias: Vec<f32>,
        epilogue: Option<Epilogue>,
    },
    /// PReLU (slopes 0 for ReLU).
    Act {
        slope: Vec<f32>,
    },
    /// `scale x + shift` per column.
    Affine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Add,
    Scale(f32),
    MinZero,
    Relu,
    Sigmoid,
    Softmax,
    Mix,
    RowDot,
    Concat,
    ProductLogit,
}

/// The fused epilogue of a hidden layer: `y = scale * prelu(y) + shift`.
#[derive(Debug, Clone)]
struct Epilogue {
    slope: Vec<f32>,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Op {
    kind: Kind,
    inputs: Vec<Node>,
    cols: usize,
}

/// The recording graph.
struct Recorder<'a> {
    model: &'a Model,
    ops: Vec<Op>,
}

impl Recorder<'_> {
    fn param(&self, p: ParamRef) -> &Matrix {
        &self.model.tensors[p.0].1
    }

    fn row(&self, p: ParamRef) -> Vec<f32> {
        self.param(p).to_vec()
    }

    fn push(&mut self, kind: Kind, inputs: &[Node], cols: usize) -> Node {
        self.ops.push(Op {
            kind,
            inputs: inputs.to_vec(),
            cols,
        });
        Node(self.ops.len() as u32 - 1)
    }

    fn cols(&self, x: Node) -> usize {
        self.ops[x.index()].cols
    }

    /// Refuses the input as the operand of anything but a linear map.
    fn value(&self, op: &'static str, x: Node) -> Result<Node, ModelError> {
        match self.ops[x.index()].kind {
            Kind::Input | Kind::InputBn { .. } => Err(op_error(
                op,
                "the serving plan reads the input concatenation only through linear maps",
            )),
            _ => Ok(x),
        }
    }

    fn same(&self, op: &'static str, a: Node, b: Node) -> Result<(), ModelError> {
        self.value(op, a)?;
        self.value(op, b)?;
        if self.cols(a) != self.cols(b) {
            return Err(op_error(op, "operands of different widths"));
        }
        Ok(())
    }

    fn bn(&self, bn: &BatchNorm) -> (Vec<f32>, Vec<f32>) {
        let c = &self.model.config;
        bn_scale_shift(
            c.batch_norm,
            c.bn_epsilon,
            &self.row(bn.gamma),
            &self.row(bn.beta),
            &self.row(bn.mean),
            &self.row(bn.var),
        )
    }

    /// `x W + b` with the input BatchNorm folded in when `x` is the normalised input.
    fn gemm(
        &mut self,
        x: Node,
        l: &Linear,
        epilogue: Option<Epilogue>,
    ) -> Result<Node, ModelError> {
        let w = self.param(l.weight).clone();
        if w.rows() != self.cols(x) {
            return Err(op_error(
                "linear",
                format!("{} inputs, weight {:?}", self.cols(x), w.shape()),
            ));
        }
        let mut bias = match l.bias {
            Some(b) => self.row(b),
            None => vec![0.0; w.cols()],
        };
        let (weight, src) = match &self.ops[x.index()].kind {
            Kind::InputBn { scale, shift } => {
                // (s x + t) W + b = x (diag(s) W) + (t W + b)
                for (j, b) in bias.iter_mut().enumerate() {
                    *b += (0..w.rows()).map(|i| shift[i] * w.get(i, j)).sum::<f32>();
                }
                let folded = Matrix::from_fn(w.rows(), w.cols(), |i, j| scale[i] * w.get(i, j));
                (folded, self.ops[x.index()].inputs[0])
            }
            _ => (w, x),
        };
        let cols = weight.cols();
        Ok(self.push(
            Kind::Gemm {
                weight,
                bias,
                epilogue,
            },
            &[src],
            cols,
        ))
    }
}

impl Graph for Recorder<'_> {
    fn linear(&mut self, x: Node, l: &Linear) -> Result<Node, ModelError> {
        self.gemm(x, l, None)
    }

    fn activation(&mut self, x: Node, slope: ParamRef) -> Result<Node, ModelError> {
        let x = self.value("activation", x)?;
        let slope = self.slopes(slope);
        Ok(self.push(Kind::Act { slope }, &[x], self.cols(x)))
    }

    fn batch_norm(&mut self, x: Node, bn: &BatchNorm) -> Result<Node, ModelError> {
        let (scale, shift) = self.bn(bn);
        if scale.len() != self.cols(x) {
            return Err(op_error(
                "batch_norm",
                "channels differ from the input's width",
            ));
        }
        if matches!(self.ops[x.index()].kind, Kind::Input) {
            return Ok(self.push(Kind::InputBn { scale, shift }, &[x], self.cols(x)));
        }
        let x = self.value("batch_norm", x)?;
        Ok(self.push(Kind::Affine { scale, shift }, &[x], self.cols(x)))
    }

    fn dense(&mut self, x: Node, d: &Dense) -> Result<Node, ModelError> {
        let (scale, shift) = self.bn(&d.bn);
        let epilogue = Epilogue {
            slope: self.slopes(d.slope),
            scale,
            shift,
        };
        self.gemm(x, &d.linear, Some(epilogue))
    }

    fn add(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.same("add", a, b)?;
        Ok(self.push(Kind::Add, &[a, b], self.cols(a)))
    }

    fn scale(&mut self, x: Node, c: f32) -> Result<Node, ModelError> {
        let x = self.value("scale", x)?;
        Ok(self.push(Kind::Scale(c), &[x], self.cols(x)))
    }

    fn min_zero(&mut self, x: Node) -> Result<Node, ModelError> {
        let x = self.value("min_zero", x)?;
        Ok(self.push(Kind::MinZero, &[x], self.cols(x)))
    }

    fn relu(&mut self, x: Node) -> Result<Node, ModelError> {
        let x = self.value("relu", x)?;
        Ok(self.push(Kind::Relu, &[x], self.cols(x)))
    }

    fn sigmoid(&mut self, x: Node) -> Result<Node, ModelError> {
        let x = self.value("sigmoid", x)?;
        Ok(self.push(Kind::Sigmoid, &[x], self.cols(x)))
    }

    fn softmax(&mut self, x: Node) -> Result<Node, ModelError> {
        let x = self.value("softmax", x)?;
        Ok(self.push(Kind::Softmax, &[x], self.cols(x)))
    }

    fn mix(&mut self, xs: &[Node], gate: Node) -> Result<Node, ModelError> {
        let first = *xs.first().ok_or_else(|| op_error("mix", "no inputs"))?;
        for &x in xs {
            self.same("mix", first, x)?;
        }
        if self.cols(self.value("mix", gate)?) != xs.len() {
            return Err(op_error("mix", "the gate needs one column per input"));
        }
        let mut inputs = vec![gate];
        inputs.extend_from_slice(xs);
        Ok(self.push(Kind::Mix, &inputs, self.cols(first)))
    }

    fn row_dot(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.same("row_dot", a, b)?;
        Ok(self.push(Kind::RowDot, &[a, b], 1))
    }

    fn concat(&mut self, xs: &[Node]) -> Result<Node, ModelError> {
        let mut cols = 0;
        for &x in xs {
            cols += self.cols(self.value("concat", x)?);
        }
        Ok(self.push(Kind::Concat, xs, cols))
    }

    fn product_logit(&mut self, a: Node, b: Node) -> Result<Node, ModelError> {
        self.same("product_logit", a, b)?;
        Ok(self.push(Kind::ProductLogit, &[a, b], self.cols(a)))
    }

    fn sum(&mut self, _x: Node) -> Result<Node, ModelError> {
        Err(op_error(
            "sum",
            "a training loss has no place in a serving plan",
        ))
    }

    fn list(&mut self) -> Vec<Node> {
        Vec::new()
    }

    fn recycle(&mut self, _list: Vec<Node>) {}
}

impl Recorder<'_> {
    fn slopes(&self, slope: ParamRef) -> Vec<f32> {
        match self.model.config.activation {
            Activation::Prelu => self.row(slope),
            Activation::Relu => vec![0.0; self.param(slope).cols()],
        }
    }
}

/// Where a GEMM reads its left operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// The gathered input: `x_cand` (and the request row `x_req`).
    Input,
    /// A buffer.
    Buf(usize),
}

/// One step of a plan. Buffers are `rows x cols` matrices of the workspace; `out` may be
/// one of the inputs (the step then works in place).
#[derive(Debug, Clone)]
enum Step {
    /// `out = src W + b` (from the input: `x_cand W_cand + (x_req W_req + b)`), then the
    /// epilogue.
    Gemm {
        src: Src,
        /// The candidates' rows of W (all of W when the GEMM does not read the input),
        /// packed for the micro-kernel (boxed: it is far larger than the other steps).
        cand: Box<Weights>,
        /// Request rows of W (none when the model has no request-level field, or the
        /// GEMM does not read the input).
        req: Option<Matrix>,
        bias: Vec<f32>,
        /// The workspace row holding `x_req W_req + b` for this request.
        row: usize,
        epilogue: Option<Epilogue>,
        out: usize,
        /// When several GEMMs with one operand run as one (see [`merge_groups`]): each
        /// one's first column in `out` and its own buffer, which the columns are copied to.
        parts: Vec<(usize, usize)>,
    },
    Act {
        x: usize,
        slope: Vec<f32>,
        out: usize,
    },
    Affine {
        x: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
        out: usize,
    },
    Add {
        a: usize,
        b: usize,
        out: usize,
    },
    Scale {
        x: usize,
        c: f32,
        out: usize,
    },
    MinZero {
        x: usize,
        out: usize,
    },
    Relu {
        x: usize,
        out: usize,
    },
    Sigmoid {
        x: usize,
        out: usize,
    },
    Softmax {
        x: usize,
        out: usize,
    },
    Mix {
        gate: usize,
        xs: Vec<usize>,
        out: usize,
    },
    RowDot {
        a: usize,
        b: usize,
        out: usize,
    },
    Concat {
        xs: Vec<usize>,
        out: usize,
    },
    ProductLogit {
        a: usize,
        b: usize,
        out: usize,
    },
}

/// A GEMM's packed weights, in the plan's [`Precision`].
#[derive(Debug, Clone)]
enum Weights {
    F32(PackedB),
    /// Quantized per column; the operand is quantized per row at run time.
    Int8(PackedQ8),
}

impl Weights {
    /// Packs `w` in int8 when `precision` asks for it and the GEMM is wide enough.
    fn new(tier: Tier, precision: Precision, w: MatRef<'_>) -> Result<Self, ModelError> {
        Ok(if int8(precision, w.cols()) {
            Weights::Int8(PackedQ8::new(tier, w)?)
        } else {
            Weights::F32(PackedB::new(tier, w)?)
        })
    }

    fn cols(&self) -> usize {
        match self {
            Weights::F32(w) => w.cols(),
            Weights::Int8(w) => w.cols(),
        }
    }
}

/// Whether a GEMM `cols` wide runs in int8 under `precision`.
fn int8(precision: Precision, cols: usize) -> bool {
    precision == Precision::Int8 && cols >= INT8_MIN_COLS
}

/// How the input concatenation splits between the candidates' gathered input and the
/// request row: the rows of a first-layer W that go to each, in their column order.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputSplit {
    /// Rows of W for `x_cand`'s columns.
    pub cand_rows: Vec<usize>,
    /// Rows of W for `x_req`'s columns.
    pub req_rows: Vec<usize>,
}

/// A compiled model: steps, buffer widths, and the buffers holding the task logits.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Vec<Step>,
    /// Columns of each buffer.
    buffers: Vec<usize>,
    /// Width of each request row.
    rows: Vec<usize>,
    /// The buffer of each task's logit (`N x 1`).
    logits: Vec<usize>,
    split: bool,
    precision: Precision,
}

/// Candidates that go through the plan together (a multiple of every tier's MR: 4, 6
/// and 12 rows, so only a request's last block has a partial panel).
///
/// 48 rows: a block's gathered input (48 x 288 floats, 55 KB with the split) and its
/// activations (48 x 128 per task) stay in L2 beside the packed weights. On the Zen 3
/// (AVX2, 512 KiB L2), `resflow bench score --candidates 500 --clock thread`, three runs
/// each on a loaded machine, 500 candidates with the split: p50 1.78 / 2.09 / 2.16 ms with
/// blocks of 48, 1.74 / 2.28 / 2.69 with 96, against 2.23 / 2.28 / 2.44 for the whole
/// request at once (before blocks and pre-packed weights). Re-checked with the towers'
/// first layers merged (six rounds in turn, load average 8-9, p50 median of six): 1.921 ms
/// with blocks of 48 against 1.935 with 96, level.
pub(crate) const BLOCK_ROWS: usize = 48;

/// The most bytes of packed weights one merged GEMM may have ([`merge_groups`]).
///
/// With the request-level split, the two towers' first layers (288 x 128 each) merge into
/// one 288 x 256 GEMM of 295 KB, which stays in the Zen 3's 512 KiB L2 beside a block's
/// activations; without the split they are 608 x 128 each, 622 KB merged, more than the
/// L2, and stay apart (`resflow bench gemm --clock thread`, loaded machine, best of 7:
/// 48 x 256 x 608 ran at 61.7 GFLOP/s against 69.1 for 48 x 128 x 608).
const MERGE_BYTES: usize = 384 * 1024;

/// The buffers a plan runs on, for up to `capacity` rows.
#[derive(Debug, Default)]
pub(crate) struct PlanBuffers {
    capacity: usize,
    bufs: Vec<Matrix>,
    rows: Vec<Matrix>,
    gemm: GemmScratch,
    /// The int8 GEMMs' operand, quantized per row.
    quant: QuantRows,
}

impl Plan {
    /// Records `model` and compiles it (see the module documentation) for `precision`.
    pub(crate) fn compile(
        model: &Model,
        split: &InputSplit,
        precision: Precision,
    ) -> Result<Self, ModelError> {
        Self::compile_merging(model, split, precision, MERGE_BYTES)
    }

    /// [`Plan::compile`] with GEMMs merged up to `budget` bytes of packed weights (0: none).
    fn compile_merging(
        model: &Model,
        split: &InputSplit,
        precision: Precision,
        budget: usize,
    ) -> Result<Self, ModelError> {
        let net = model.net()?;
        let width = model.layout.input_width(model.config.embedding_dim);
        let mut rec = Recorder {
            model,
            ops: Vec::new(),
        };
        let input = rec.push(Kind::Input, &[], width);
        let mut logits = Vec::new();
        net.forward(&mut rec, input, &mut logits)?;
        Self::emit(rec.ops, &logits, split, precision, budget)
    }

    fn emit(
        ops: Vec<Op>,
        logits: &[Node],
        split: &InputSplit,
        precision: Precision,
        budget: usize,
    ) -> Result<Self, ModelError> {
        let mut uses = vec![0usize; ops.len()];
        for op in &ops {
            for x in &op.inputs {
                uses[x.index()] += 1;
            }
        }
        for z in logits {
            uses[z.index()] += 1;
        }
        let split_on = !split.req_rows.is_empty();
        let groups = merge_groups(&ops, split, precision, budget);
        let mut ops: Vec<Option<Op>> = ops.into_iter().map(Some).collect();
        let mut buffers: Vec<usize> = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        let mut buf_of: Vec<Option<usize>> = vec![None; ops.len()];
        let mut steps = Vec::new();
        let tier = Tier::active();
        for i in 0..ops.len() {
            // A GEMM merged into an earlier one already has its buffer.
            let Some(op) = ops[i].take() else { continue };
            let buf = |x: &Node| -> Result<usize, ModelError> {
                buf_of[x.index()].ok_or_else(|| op_error("plan", "an op reads the unfolded input"))
            };
            // A fresh buffer, or the first input's when this op is its only reader.
            let fresh = |buffers: &mut Vec<usize>| {
                buffers.push(op.cols);
                buffers.len() - 1
            };
            let in_place = |x: &Node| uses[x.index()] == 1 && buf_of[x.index()].is_some();
            let unary_out =
                |buffers: &mut Vec<usize>, x: &Node| -> Result<(usize, usize), ModelError> {
                    Ok((buf(x)?, fresh(buffers)))
                };
            let step = match op.kind {
                Kind::Input | Kind::InputBn { .. } => continue,
                Kind::Gemm {
                    weight,
                    bias,
                    epilogue,
                } => {
                    let x = op.inputs[0];
                    let reads_input = buf_of[x.index()].is_none();
                    let src = if reads_input {
                        Src::Input
                    } else {
                        Src::Buf(buf(&x)?)
                    };
                    // This GEMM and the later ones merged into it: W = [W_1 | W_2 | ...].
                    let mut members = vec![(i, weight, bias, epilogue)];
                    for &j in &groups[i] {
                        match ops[j].take().map(|o| o.kind) {
                            Some(Kind::Gemm {
                                weight,
                                bias,
                                epilogue,
                            }) => members.push((j, weight, bias, epilogue)),
                            _ => return Err(op_error("plan", "a merged op is not a GEMM")),
                        }
                    }
                    let merged = Merged::new(&members);
                    let out = if members.len() == 1 {
                        fresh(&mut buffers)
                    } else {
                        buffers.push(merged.weight.cols());
                        buffers.len() - 1
                    };
                    let mut parts = Vec::new();
                    if members.len() > 1 {
                        let mut col = 0;
                        for (j, w, ..) in &members {
                            buffers.push(w.cols());
                            parts.push((col, buffers.len() - 1));
                            buf_of[*j] = Some(buffers.len() - 1);
                            col += w.cols();
                        }
                    }
                    let Merged {
                        weight,
                        bias,
                        epilogue,
                    } = merged;
                    if reads_input {
                        // Reads the input: split W by rows.
                        let gather = |sel: &[usize]| {
                            Matrix::from_fn(sel.len(), weight.cols(), |r, j| weight.get(sel[r], j))
                        };
                        let cand = Box::new(Weights::new(
                            tier,
                            precision,
                            gather(&split.cand_rows).view(),
                        )?);
                        let req = split_on.then(|| gather(&split.req_rows));
                        rows.push(weight.cols());
                        Step::Gemm {
                            src,
                            cand,
                            req,
                            bias,
                            row: rows.len() - 1,
                            epilogue,
                            out,
                            parts,
                        }
                    } else {
                        Step::Gemm {
                            src,
                            cand: Box::new(Weights::new(tier, precision, weight.view())?),
                            req: None,
                            bias,
                            row: usize::MAX,
                            epilogue,
                            out,
                            parts,
                        }
                    }
                }
                Kind::Act { slope } => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::Act { x, slope, out }
                }
                Kind::Affine { scale, shift } => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::Affine {
                        x,
                        scale,
                        shift,
                        out,
                    }
                }
                Kind::Add => {
                    let (a, b) = (buf(&op.inputs[0])?, buf(&op.inputs[1])?);
                    let out = if in_place(&op.inputs[0]) && a != b {
                        a
                    } else if in_place(&op.inputs[1]) && a != b {
                        b
                    } else {
                        fresh(&mut buffers)
                    };
                    Step::Add { a, b, out }
                }
                Kind::Scale(c) => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::Scale { x, c, out }
                }
                Kind::MinZero => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::MinZero { x, out }
                }
                Kind::Relu => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::Relu { x, out }
                }
                Kind::Sigmoid => {
                    let (x, out) = unary_out(&mut buffers, &op.inputs[0])?;
                    Step::Sigmoid { x, out }
                }
                Kind::Softmax => Step::Softmax {
                    x: buf(&op.inputs[0])?,
                    out: fresh(&mut buffers),
                },
                Kind::Mix => Step::Mix {
                    gate: buf(&op.inputs[0])?,
                    xs: op.inputs[1..].iter().map(buf).collect::<Result<_, _>>()?,
                    out: fresh(&mut buffers),
                },
                Kind::RowDot => Step::RowDot {
                    a: buf(&op.inputs[0])?,
                    b: buf(&op.inputs[1])?,
                    out: fresh(&mut buffers),
                },
                Kind::Concat => Step::Concat {
                    xs: op.inputs.iter().map(buf).collect::<Result<_, _>>()?,
                    out: fresh(&mut buffers),
                },
                Kind::ProductLogit => Step::ProductLogit {
                    a: buf(&op.inputs[0])?,
                    b: buf(&op.inputs[1])?,
                    out: fresh(&mut buffers),
                },
            };
            if buf_of[i].is_none() {
                buf_of[i] = Some(step_out(&step));
            }
            steps.push(step);
        }
        let logits = logits
            .iter()
            .map(|z| buf_of[z.index()].ok_or_else(|| op_error("plan", "a logit is the raw input")))
            .collect::<Result<Vec<_>, _>>()?;
        if logits.iter().any(|&b| buffers[b] != 1) {
            return Err(op_error("plan", "a task logit is not one column wide"));
        }
        Ok(Self {
            steps,
            buffers,
            rows,
            logits,
            split: split_on,
            precision,
        })
    }

    /// The arithmetic of the plan's GEMMs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Number of GEMM steps that run in int8 (0 in f32).
    pub fn int8_gemms(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Gemm { cand, .. } if matches!(**cand, Weights::Int8(_))))
            .count()
    }

    /// Number of steps (GEMMs and element-wise passes).
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Whether the plan computes a request-level part of its first layers once per request.
    pub fn splits_requests(&self) -> bool {
        self.split
    }

    /// Grows `ws` to hold `n` rows (at most [`BLOCK_ROWS`]: larger requests run a block
    /// at a time).
    pub(crate) fn reserve(&self, ws: &mut PlanBuffers, n: usize) {
        let n = n.clamp(1, BLOCK_ROWS);
        if ws.capacity >= n && ws.bufs.len() == self.buffers.len() {
            return;
        }
        let n = n.max(ws.capacity);
        ws.capacity = n;
        ws.bufs = self.buffers.iter().map(|&c| Matrix::zeros(n, c)).collect();
        ws.rows = self.rows.iter().map(|&c| Matrix::zeros(1, c)).collect();
    }

    /// Computes the request part of every GEMM that reads the input, `x_req W_req + b`,
    /// once per request, before [`Plan::run`] on the request's blocks of candidates.
    pub(crate) fn run_request(
        &self,
        ws: &mut PlanBuffers,
        x_req: MatRef<'_>,
    ) -> Result<(), ModelError> {
        let tier = Tier::active();
        for step in &self.steps {
            if let Step::Gemm {
                req: Some(w_req),
                bias,
                row,
                ..
            } = step
            {
                let r = &mut ws.rows[*row];
                r.as_mut_slice().copy_from_slice(bias);
                gemm_with(
                    tier,
                    1.0,
                    x_req,
                    w_req.view(),
                    1.0,
                    r.view_mut(),
                    &mut ws.gemm,
                )?;
            }
        }
        Ok(())
    }

    /// Runs the plan on `n` gathered rows `x_cand` (`n x C`, `n` at most the rows
    /// [`Plan::reserve`] made room for), after [`Plan::run_request`] for their request,
    /// leaving task `t`'s logits in [`Plan::logit`]`(ws, t)`.
    pub(crate) fn run(
        &self,
        ws: &mut PlanBuffers,
        x_cand: MatRef<'_>,
        n: usize,
    ) -> Result<(), ModelError> {
        debug_assert!(n <= ws.capacity);
        for step in &self.steps {
            match step {
                Step::Gemm {
                    src,
                    cand,
                    req,
                    bias,
                    row,
                    epilogue,
                    out,
                    parts,
                } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let cols = cand.cols();
                    {
                        let a = match src {
                            Src::Input => x_cand,
                            Src::Buf(b) => rows_ref(&ws.bufs[*b], n),
                        };
                        match &**cand {
                            Weights::F32(w) => {
                                gemm_packed(1.0, a, w, 0.0, rows_mut(&mut y, n), &mut ws.gemm)?
                            }
                            Weights::Int8(w) => {
                                ws.quant.quantize(a)?;
                                gemm_q8(&ws.quant, w, rows_mut(&mut y, n))?;
                            }
                        }
                    }
                    let y_rows = &mut y.as_mut_slice()[..n * cols];
                    match req {
                        // The request part, computed once by run_request: x_req W_req + b.
                        Some(_) => ops::add_bias_rows(y_rows, ws.rows[*row].row(0)),
                        None => ops::add_bias_rows(y_rows, bias),
                    }
                    if let Some(e) = epilogue {
                        ops::prelu_scale_shift(y_rows, &e.slope, &e.scale, &e.shift);
                    }
                    // A merged GEMM: each part's columns to its own buffer.
                    for &(col, b) in parts {
                        let part = &mut ws.bufs[b];
                        let c = part.cols();
                        for (dst, src) in part.as_mut_slice()[..n * c]
                            .chunks_exact_mut(c)
                            .zip(y_rows.chunks_exact(cols))
                        {
                            dst.copy_from_slice(&src[col..col + c]);
                        }
                    }
                    ws.bufs[*out] = y;
                }
                Step::Act { x, slope, out } => unary(ws, *x, *out, n, |x, y, _| {
                    ops::prelu(x, slope, y);
                }),
                Step::Affine {
                    x,
                    scale,
                    shift,
                    out,
                } => unary(ws, *x, *out, n, |x, y, c| {
                    for (i, (a, o)) in x.iter().zip(y).enumerate() {
                        *o = scale[i % c] * a + shift[i % c];
                    }
                }),
                Step::Add { a, b, out } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let len = n * self.buffers[*out];
                    let ys = &mut y.as_mut_slice()[..len];
                    if out == a {
                        ops::axpy(1.0, &ws.bufs[*b].as_slice()[..len], ys);
                    } else if out == b {
                        ops::axpy(1.0, &ws.bufs[*a].as_slice()[..len], ys);
                    } else {
                        ops::add(
                            &ws.bufs[*a].as_slice()[..len],
                            &ws.bufs[*b].as_slice()[..len],
                            ys,
                        );
                    }
                    ws.bufs[*out] = y;
                }
                Step::Scale { x, c, out } => unary(ws, *x, *out, n, |x, y, _| {
                    y.copy_from_slice(x);
                    ops::scale(*c, y);
                }),
                Step::MinZero { x, out } => unary(ws, *x, *out, n, |x, y, _| {
                    for (o, &a) in y.iter_mut().zip(x) {
                        *o = a.min(0.0);
                    }
                }),
                Step::Relu { x, out } => unary(ws, *x, *out, n, |x, y, _| ops::relu(x, y)),
                Step::Sigmoid { x, out } => unary(ws, *x, *out, n, |x, y, _| ops::sigmoid(x, y)),
                Step::Softmax { x, out } => {
                    unary(ws, *x, *out, n, |x, y, c| ops::softmax_rows(x, c, y))
                }
                Step::Mix { gate, xs, out } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let c = self.buffers[*out];
                    let k = xs.len();
                    let ys = &mut y.as_mut_slice()[..n * c];
                    ys.fill(0.0);
                    let g = &ws.bufs[*gate].as_slice()[..n * k];
                    for (j, &x) in xs.iter().enumerate() {
                        let xv = &ws.bufs[x].as_slice()[..n * c];
                        for r in 0..n {
                            ops::axpy(
                                g[r * k + j],
                                &xv[r * c..(r + 1) * c],
                                &mut ys[r * c..(r + 1) * c],
                            );
                        }
                    }
                    ws.bufs[*out] = y;
                }
                Step::RowDot { a, b, out } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let c = self.buffers[*a];
                    let (av, bv) = (
                        &ws.bufs[*a].as_slice()[..n * c],
                        &ws.bufs[*b].as_slice()[..n * c],
                    );
                    for (r, o) in y.as_mut_slice()[..n].iter_mut().enumerate() {
                        *o = av[r * c..(r + 1) * c]
                            .iter()
                            .zip(&bv[r * c..(r + 1) * c])
                            .map(|(p, q)| p * q)
                            .sum();
                    }
                    ws.bufs[*out] = y;
                }
                Step::Concat { xs, out } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let width = self.buffers[*out];
                    let ys = y.as_mut_slice();
                    let mut col = 0;
                    for &x in xs {
                        let c = self.buffers[x];
                        let xv = ws.bufs[x].as_slice();
                        for r in 0..n {
                            ys[r * width + col..r * width + col + c]
                                .copy_from_slice(&xv[r * c..(r + 1) * c]);
                        }
                        col += c;
                    }
                    ws.bufs[*out] = y;
                }
                Step::ProductLogit { a, b, out } => {
                    let mut y = std::mem::take(&mut ws.bufs[*out]);
                    let len = n * self.buffers[*out];
                    let (av, bv) = (
                        &ws.bufs[*a].as_slice()[..len],
                        &ws.bufs[*b].as_slice()[..len],
                    );
                    for ((o, &p), &q) in y.as_mut_slice()[..len].iter_mut().zip(av).zip(bv) {
                        *o = tensor::ops::product_logit(p, q);
                    }
                    ws.bufs[*out] = y;
                }
            }
        }
        Ok(())
    }

    /// Task `t`'s logits after [`Plan::run`] on `n` rows.
    pub(crate) fn logit<'w>(&self, ws: &'w PlanBuffers, t: usize, n: usize) -> &'w [f32] {
        &ws.bufs[self.logits[t]].as_slice()[..n]
    }
}

/// The GEMMs of one merged step, side by side: `W = [W_1 | W_2 | ...]`, the biases and
/// epilogues concatenated (a GEMM without an epilogue gets the identity: slope 1, scale 1,
/// shift 0, which leaves every value as it is).
struct Merged {
    weight: Matrix,
    bias: Vec<f32>,
    epilogue: Option<Epilogue>,
}

impl Merged {
    fn new(members: &[(usize, Matrix, Vec<f32>, Option<Epilogue>)]) -> Self {
        if let [(_, weight, bias, epilogue)] = members {
            return Self {
                weight: weight.clone(),
                bias: bias.clone(),
                epilogue: epilogue.clone(),
            };
        }
        let k = members[0].1.rows();
        let total: usize = members.iter().map(|m| m.1.cols()).sum();
        // Column j of the merged W: member `owner[j]`'s column `j - start[owner[j]]`.
        let mut owner = Vec::with_capacity(total);
        let mut start = Vec::with_capacity(members.len());
        for (m, member) in members.iter().enumerate() {
            start.push(owner.len());
            owner.extend(std::iter::repeat_n(m, member.1.cols()));
        }
        let weight = Matrix::from_fn(k, total, |r, j| {
            members[owner[j]].1.get(r, j - start[owner[j]])
        });
        let bias = members.iter().flat_map(|m| m.2.iter().copied()).collect();
        let epilogue = members.iter().any(|m| m.3.is_some()).then(|| {
            let mut e = Epilogue {
                slope: Vec::with_capacity(total),
                scale: Vec::with_capacity(total),
                shift: Vec::with_capacity(total),
            };
            for (_, w, _, ep) in members {
                match ep {
                    Some(ep) => {
                        e.slope.extend_from_slice(&ep.slope);
                        e.scale.extend_from_slice(&ep.scale);
                        e.shift.extend_from_slice(&ep.shift);
                    }
                    None => {
                        e.slope.extend(std::iter::repeat_n(1.0, w.cols()));
                        e.scale.extend(std::iter::repeat_n(1.0, w.cols()));
                        e.shift.extend(std::iter::repeat_n(0.0, w.cols()));
                    }
                }
            }
            e
        });
        Self {
            weight,
            bias,
            epilogue,
        }
    }
}

/// Which GEMMs run as one: for each op, the later GEMMs merged into it (empty for every
/// other op). GEMMs that read the same operand (both towers' first layers read the input)
/// become one GEMM of their widths side by side, so each block of the operand is read
/// once and the micro-kernel runs on it for longer, as long as the merged packed weights
/// stay within `budget` bytes (a GEMM is never split).
fn merge_groups(
    ops: &[Op],
    split: &InputSplit,
    precision: Precision,
    budget: usize,
) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); ops.len()];
    // For each operand, the GEMM currently collecting merges and its bytes so far.
    let mut open: std::collections::HashMap<usize, (usize, usize)> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let Kind::Gemm { weight, .. } = &op.kind else {
            continue;
        };
        let x = op.inputs[0].index();
        let k = match ops[x].kind {
            Kind::Input if !split.req_rows.is_empty() => split.cand_rows.len(),
            _ => weight.rows(),
        };
        // Packed int8 weights take a byte per weight, f32 ones four.
        let per = if int8(precision, weight.cols()) {
            1
        } else {
            std::mem::size_of::<f32>()
        };
        let bytes = k * weight.cols() * per;
        match open.get_mut(&x) {
            Some((lead, total)) if *total + bytes <= budget => {
                groups[*lead].push(i);
                *total += bytes;
            }
            _ => {
                open.insert(x, (i, bytes));
            }
        }
    }
    groups
}

fn step_out(step: &Step) -> usize {
    match step {
        Step::Gemm { out, .. }
        | Step::Act { out, .. }
        | Step::Affine { out, .. }
        | Step::Add { out, .. }
        | Step::Scale { out, .. }
        | Step::MinZero { out, .. }
        | Step::Relu { out, .. }
        | Step::Sigmoid { out, .. }
        | Step::Softmax { out, .. }
        | Step::Mix { out, .. }
        | Step::RowDot { out, .. }
        | Step::Concat { out, .. }
        | Step::ProductLogit { out, .. } => *out,
    }
}

/// `out = f(x)` over the first `n` rows (`f` gets the input, the output and the width).
fn unary(
    ws: &mut PlanBuffers,
    x: usize,
    out: usize,
    n: usize,
    f: impl FnOnce(&[f32], &mut [f32], usize),
) {
    let c = ws.bufs[out].cols();
    let len = n * c;
    let mut y = std::mem::take(&mut ws.bufs[out]);
    f(
        &ws.bufs[x].as_slice()[..len],
        &mut y.as_mut_slice()[..len],
        c,
    );
    ws.bufs[out] = y;
}

/// The first `n` rows of `m`, read-only.
fn rows_ref(m: &Matrix, n: usize) -> MatRef<'_> {
    m.view().sub(0, 0, n, m.cols())
}

/// The first `n` rows of `m`, mutable.
fn rows_mut(m: &mut Matrix, n: usize) -> MatMut<'_> {
    let cols = m.cols();
    m.view_mut().sub(0, 0, n, cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, TaskConfig};
    use crate::layout::{Field, InputLayout};

    fn model() -> Model {
        let layout = InputLayout {
            fields: (0..4)
                .map(|i| Field {
                    name: format!("f{i}"),
                    vocab: 50,
                    bag: None,
                })
                .collect(),
            dense: 3,
            tasks: vec!["click".into(), "conversion".into()],
        };
        let config = ModelConfig {
            tasks: ["click", "conversion"]
                .iter()
                .map(|n| TaskConfig::unweighted(*n))
                .collect(),
            ..ModelConfig::default()
        };
        Model::random(config, layout, 7).unwrap()
    }

    fn gemms(plan: &Plan) -> usize {
        plan.steps
            .iter()
            .filter(|s| matches!(s, Step::Gemm { .. }))
            .count()
    }

    /// Both towers' first layers read the input: merged, they are one GEMM fewer, and
    /// every logit is the same, bit for bit, as with the GEMMs apart.
    #[test]
    fn merged_first_layers_score_bit_for_bit_like_separate_ones() {
        let model = model();
        let width = model.layout.input_width(model.config.embedding_dim);
        let split = InputSplit {
            cand_rows: (0..width).collect(),
            req_rows: vec![],
        };
        let merged = Plan::compile_merging(&model, &split, Precision::F32, MERGE_BYTES).unwrap();
        let apart = Plan::compile_merging(&model, &split, Precision::F32, 0).unwrap();
        assert_eq!(gemms(&merged) + 1, gemms(&apart));
        let mut rng = crate::rng::SplitMix64::new(3);
        for n in [1, 5, BLOCK_ROWS] {
            let x = Matrix::from_fn(n, width, |_, _| rng.uniform(1.0));
            let x_req = Matrix::zeros(1, 0);
            let mut logits = Vec::new();
            for plan in [&merged, &apart] {
                let mut ws = PlanBuffers::default();
                plan.reserve(&mut ws, n);
                plan.run_request(&mut ws, x_req.view()).unwrap();
                plan.run(&mut ws, x.view(), n).unwrap();
                logits.push(
                    (0..2)
                        .map(|t| plan.logit(&ws, t, n).to_vec())
                        .collect::<Vec<_>>(),
                );
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (t, (a, b)) in logits[0].iter().zip(&logits[1]).enumerate() {
                assert_eq!(bits(a), bits(b), "task {t}, {n} rows");
            }
        }
    }
}
