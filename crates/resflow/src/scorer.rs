//! The scorer: a request of N candidates in, per-task probabilities and a fused ranking
//! score out, with no allocation once its workspace has grown to the largest request.
//!
//! Data flow for one request (T tasks, hidden widths h1, h2, ...):
//!
//! ```text
//! request fields (once)    x_req (1 x R)  --GEMV-->  r_t = x_req W1_req[t] + b1[t]   (1 x h1)
//! candidate fields         x_c   (N x C)  --GEMM-->  x_c W1_cand[t] + r_t             (N x h1)
//!   o_t^1 = scale * prelu(.) + shift  (+ o_(t-1)^1)
//!   o_t^l = scale * prelu(o_t^(l-1) W_t^l + b) + shift  (+ o_(t-1)^l)
//!   z_t   = o_t^L w_t + b_t  (+ z_(t-1)),   p_t = sigmoid(z_t)
//! fused score = sum_t w_t p_t   or   prod_t p_t ^ w_t
//! ```
//!
//! The first layer is where the work is: its input is the concatenation of every field's
//! embedding. Its product splits by rows of W1 into the part from fields that are the same
//! for every candidate of a request (user, context: `request_fields` in the configuration)
//! and the rest; the request part is computed once per request instead of N times.
//!
//! The baselines (Shared-Bottom, ESMM, MMoE, PLE, AITM) take a generic path: the same
//! gather, then their head's forward pass recorded on a tape in inference mode. The tape,
//! its arena, its GEMM scratch and the heads' lists of handles live in the workspace and
//! are reused, so this path allocates nothing once warm either, on any thread.

use tensor::{GemmScratch, MatMut, MatRef, Matrix, gemm_with, ops};

use autodiff::{ParamStore, Tape};

use crate::error::ModelError;
use crate::layout::Pooling;
use crate::network::{Forward, Mode, Network, Scratch};
use crate::serving::ServingModel;

/// A multi-valued field's ids for a list of rows: row `r` owns `ids[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Clone, Copy)]
pub struct Bag<'a> {
    /// `rows + 1` non-decreasing offsets starting at 0 and ending at `ids.len()`.
    pub offsets: &'a [u64],
    /// All rows' ids, concatenated.
    pub ids: &'a [u32],
}

/// The inputs of one request, borrowed from the caller.
///
/// Fields are split into the model's request-level fields (given once) and candidate-level
/// fields (given per candidate); within each group single-valued fields come in `ids` and
/// multi-valued ones in `bags`, both in the model's field order ([`Scorer::request_fields`],
/// [`Scorer::candidate_fields`]).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Number of candidates N.
    pub candidates: usize,
    /// Single-valued candidate fields, `N x S_c` ids, row-major.
    pub ids: &'a [u32],
    /// One bag per multi-valued candidate field, each over N rows.
    pub bags: &'a [Bag<'a>],
    /// Dense features: candidate `r` at `dense[r * dense_stride..][..D]`.
    pub dense: &'a [f32],
    /// Distance between consecutive candidates' dense features (at least D).
    pub dense_stride: usize,
    /// Single-valued request fields, one id each.
    pub request_ids: &'a [u32],
    /// One bag per multi-valued request field, over one row (offsets of length 2).
    pub request_bags: &'a [Bag<'a>],
}

/// How a field enters the scorer.
#[derive(Debug, Clone)]
struct FieldPlan {
    /// Index in the layout (and in the embedding tables).
    field: usize,
    /// Column offset of this field's embedding in its group's input (`x_req` or `x_c`).
    column: usize,
}

/// Per-task first-layer weights, split into candidate and request rows.
#[derive(Debug, Clone)]
struct FirstLayer {
    cand: Matrix,
    req: Matrix,
}

/// Scores requests for one [`ServingModel`]; immutable, shareable across threads.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: ServingModel,
    cand_single: Vec<FieldPlan>,
    cand_bags: Vec<FieldPlan>,
    req_single: Vec<FieldPlan>,
    req_bags: Vec<FieldPlan>,
    cand_width: usize,
    req_width: usize,
    first: Vec<FirstLayer>,
    fusion: Vec<f32>,
    /// A baseline's input BatchNorm and head (`None` for ResFlow's towers).
    head: Option<(Network, ParamStore)>,
}

/// Per-thread buffers of a [`Scorer`]; they grow to the largest request and are reused.
#[derive(Debug, Default)]
pub struct Workspace {
    capacity: usize,
    x_cand: Matrix,
    x_req: Matrix,
    req_part: Vec<Matrix>,
    hidden: Vec<Vec<Matrix>>,
    logits: Vec<Matrix>,
    gemm: GemmScratch,
    /// The generic path: the tape it runs on (the input is written onto it in layout order).
    tape: Tape,
    scratch: Scratch,
    forward: Forward,
}

impl Workspace {
    /// The largest request (in candidates) the buffers hold without growing.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Scorer {
    /// Prepares a scorer: checks the model and splits its first layer by field group.
    pub fn new(model: ServingModel) -> Result<Self, ModelError> {
        // Validation builds a baseline's head; it is kept, not built again.
        let head = model.checked_head()?;
        let dim = model.config.embedding_dim;
        let layout = &model.layout;
        let mut is_request = vec![false; layout.fields.len()];
        for name in &model.config.request_fields {
            let i = layout.field_index(name).ok_or_else(|| {
                ModelError::Config(format!(
                    "request_fields names {name:?}, which is not an input field"
                ))
            })?;
            is_request[i] = true;
        }
        let (mut cand_single, mut cand_bags, mut req_single, mut req_bags) =
            (vec![], vec![], vec![], vec![]);
        let (mut cand_width, mut req_width) = (0, 0);
        // Row ranges of W1 that go to each group, in the group's column order.
        let (mut cand_rows, mut req_rows) = (vec![], vec![]);
        for (i, f) in layout.fields.iter().enumerate() {
            let rows = i * dim..(i + 1) * dim;
            let (plan, width, ranges) = if is_request[i] {
                (
                    if f.bag.is_some() {
                        &mut req_bags
                    } else {
                        &mut req_single
                    },
                    &mut req_width,
                    &mut req_rows,
                )
            } else {
                (
                    if f.bag.is_some() {
                        &mut cand_bags
                    } else {
                        &mut cand_single
                    },
                    &mut cand_width,
                    &mut cand_rows,
                )
            };
            plan.push(FieldPlan {
                field: i,
                column: *width,
            });
            *width += dim;
            ranges.push(rows);
        }
        let dense_start = layout.fields.len() * dim;
        cand_rows.push(dense_start..dense_start + layout.dense);
        cand_width += layout.dense;

        let gather = |w: &Matrix, ranges: &[std::ops::Range<usize>], width: usize| {
            let mut out = Matrix::zeros(width, w.cols());
            let mut r = 0;
            for range in ranges {
                for src in range.clone() {
                    out.row_mut(r).copy_from_slice(w.row(src));
                    r += 1;
                }
            }
            out
        };
        let first = model
            .towers
            .iter()
            .map(|t| FirstLayer {
                cand: gather(&t.layers[0].weight, &cand_rows, cand_width),
                req: gather(&t.layers[0].weight, &req_rows, req_width),
            })
            .collect();
        let fusion = model.config.fusion_weights();
        Ok(Self {
            head,
            model,
            cand_single,
            cand_bags,
            req_single,
            req_bags,
            cand_width,
            req_width,
            first,
            fusion,
        })
    }

    /// The model being served.
    pub fn model(&self) -> &ServingModel {
        &self.model
    }

    /// Number of tasks (probabilities per candidate).
    pub fn tasks(&self) -> usize {
        self.model.config.tasks.len()
    }

    /// Names of the request-level fields: single-valued ones first, then bags, as a
    /// [`Request`] expects them.
    pub fn request_fields(&self) -> Vec<&str> {
        self.names(&self.req_single, &self.req_bags)
    }

    /// Names of the candidate-level fields: single-valued ones first, then bags.
    pub fn candidate_fields(&self) -> Vec<&str> {
        self.names(&self.cand_single, &self.cand_bags)
    }

    fn names<'s>(&'s self, single: &[FieldPlan], bags: &[FieldPlan]) -> Vec<&'s str> {
        single
            .iter()
            .chain(bags)
            .map(|p| self.model.layout.fields[p.field].name.as_str())
            .collect()
    }

    /// A workspace ready for requests of up to `candidates` candidates (it grows if a
    /// larger request comes). It holds every buffer a request needs, the GEMMs' packing
    /// scratch included, so it can move between threads; its GEMM scratch reaches its full
    /// size during the first request.
    pub fn workspace(&self, candidates: usize) -> Workspace {
        let mut ws = Workspace::default();
        self.reserve(&mut ws, candidates);
        ws
    }

    fn reserve(&self, ws: &mut Workspace, n: usize) {
        if ws.capacity >= n && !ws.logits.is_empty() {
            return;
        }
        let n = n.max(1);
        let tasks = self.tasks();
        ws.capacity = n;
        ws.x_cand = Matrix::zeros(n, self.cand_width);
        ws.x_req = Matrix::zeros(1, self.req_width);
        ws.logits = (0..tasks).map(|_| Matrix::zeros(n, 1)).collect();
        if self.head.is_some() {
            // The generic path keeps its activations on the workspace's tape.
            return;
        }
        ws.req_part = (0..tasks)
            .map(|_| Matrix::zeros(1, self.model.config.hidden[0]))
            .collect();
        ws.hidden = (0..tasks)
            .map(|_| {
                self.model
                    .config
                    .hidden
                    .iter()
                    .map(|&h| Matrix::zeros(n, h))
                    .collect()
            })
            .collect();
    }

    /// Scores one request into `probs` (`N x T`, row-major) and `fused` (`N`).
    pub fn score(
        &self,
        ws: &mut Workspace,
        req: &Request<'_>,
        probs: &mut [f32],
        fused: &mut [f32],
    ) -> Result<(), ModelError> {
        let n = req.candidates;
        let tasks = self.tasks();
        if probs.len() < n * tasks {
            return Err(ModelError::BufferTooSmall {
                what: "probabilities",
                needed: n * tasks,
                got: probs.len(),
            });
        }
        if fused.len() < n {
            return Err(ModelError::BufferTooSmall {
                what: "fused scores",
                needed: n,
                got: fused.len(),
            });
        }
        self.check_request(req)?;
        if n == 0 {
            return Ok(());
        }
        self.reserve(ws, n);
        self.gather(ws, req)?;
        if let Some((net, store)) = &self.head {
            self.score_head(net, store, ws, n, probs)?;
        } else {
            self.score_towers(ws, n, probs)?;
        }
        let weights = &self.fusion;
        for (r, f) in fused.iter_mut().enumerate().take(n) {
            let p = &probs[r * tasks..(r + 1) * tasks];
            *f = metrics::fuse_row(p, weights, self.model.config.fusion.kind);
        }
        Ok(())
    }

    /// The generic path: `x` in layout order from the gathered groups, then the head on the
    /// workspace's tape.
    fn score_head(
        &self,
        net: &Network,
        store: &ParamStore,
        ws: &mut Workspace,
        n: usize,
        probs: &mut [f32],
    ) -> Result<(), ModelError> {
        let dim = self.model.config.embedding_dim;
        let width = self.model.layout.input_width(dim);
        let d = self.model.layout.dense;
        ws.tape.reset();
        // x in layout order, written straight onto the tape.
        let (x_cand, x_req) = (&ws.x_cand, &ws.x_req);
        let xv = ws.tape.input_with(n, width, |x| {
            let req = x_req.row(0);
            for (r, out) in x.chunks_exact_mut(width).enumerate() {
                let cand = x_cand.row(r);
                for p in self.cand_single.iter().chain(&self.cand_bags) {
                    out[p.field * dim..(p.field + 1) * dim]
                        .copy_from_slice(&cand[p.column..p.column + dim]);
                }
                for p in self.req_single.iter().chain(&self.req_bags) {
                    out[p.field * dim..(p.field + 1) * dim]
                        .copy_from_slice(&req[p.column..p.column + dim]);
                }
                out[width - d..].copy_from_slice(&cand[self.cand_width - d..self.cand_width]);
            }
        });
        net.forward_input(
            &mut ws.tape,
            store,
            xv,
            Mode::Eval,
            None,
            &mut ws.scratch,
            &mut ws.forward,
        )?;
        let tasks = self.tasks();
        for (t, &z) in ws.forward.logits.iter().enumerate() {
            let p = &mut ws.logits[t].as_mut_slice()[..n];
            ops::sigmoid(ws.tape.value(z), p);
            for (r, &v) in p.iter().enumerate() {
                probs[r * tasks + t] = v;
            }
        }
        Ok(())
    }

    /// ResFlow's towers, fused by hand (see the module documentation).
    fn score_towers(
        &self,
        ws: &mut Workspace,
        n: usize,
        probs: &mut [f32],
    ) -> Result<(), ModelError> {
        let tasks = self.tasks();

        let config = &self.model.config;
        let residual = config.links();
        // The GEMMs use the workspace's own scratch, so a workspace carries all the memory a
        // request needs to whichever thread uses it.
        let tier = tensor::Tier::active();
        for t in 0..tasks {
            let tower = &self.model.towers[t];
            // Layer 1: candidate part by GEMM, request part once, as a bias.
            let l0 = &tower.layers[0];
            let bias = ws.req_part[t].row_mut(0);
            bias.copy_from_slice(&l0.bias);
            if self.req_width > 0 {
                let (x_req, first) = (ws.x_req.view(), &self.first[t]);
                gemm_with(
                    tier,
                    1.0,
                    x_req,
                    first.req.view(),
                    1.0,
                    ws.req_part[t].view_mut(),
                    &mut ws.gemm,
                )?;
            }
            for l in 0..tower.layers.len() {
                let layer = &tower.layers[l];
                let (done, rest) = ws.hidden.split_at_mut(t);
                let own = &mut rest[0];
                let (before, current) = own.split_at_mut(l);
                let out = &mut current[0];
                let rows = n * layer.bias.len();
                {
                    let c = rows_of(out, n);
                    if l == 0 {
                        gemm_with(
                            tier,
                            1.0,
                            rows_ref(&ws.x_cand, n),
                            self.first[t].cand.view(),
                            0.0,
                            c,
                            &mut ws.gemm,
                        )?;
                        ops::add_bias_rows(&mut out.as_mut_slice()[..rows], ws.req_part[t].row(0));
                    } else {
                        gemm_with(
                            tier,
                            1.0,
                            rows_ref(&before[l - 1], n),
                            layer.weight.view(),
                            0.0,
                            c,
                            &mut ws.gemm,
                        )?;
                        ops::add_bias_rows(&mut out.as_mut_slice()[..rows], &layer.bias);
                    }
                }
                let y = &mut out.as_mut_slice()[..rows];
                ops::prelu_scale_shift(y, &layer.slope, &layer.scale, &layer.shift);
                if residual.hidden && t > 0 {
                    ops::axpy(1.0, &done[t - 1][l].as_slice()[..rows], y);
                }
            }
            let last = &ws.hidden[t][tower.layers.len() - 1];
            let w = MatRef::from_slice(&tower.logit_weight, tower.logit_weight.len(), 1, 1)?;
            gemm_with(
                tier,
                1.0,
                rows_ref(last, n),
                w,
                0.0,
                rows_of(&mut ws.logits[t], n),
                &mut ws.gemm,
            )?;
            let (done, rest) = ws.logits.split_at_mut(t);
            let z = &mut rest[0].as_mut_slice()[..n];
            for v in z.iter_mut() {
                *v += tower.logit_bias;
            }
            if residual.logits && t > 0 {
                let prev = &done[t - 1].as_slice()[..n];
                for (v, &p) in z.iter_mut().zip(prev) {
                    *v = p + if residual.monotone { v.min(0.0) } else { *v };
                }
            }
        }
        // Probabilities (interleaved N x T) and the fused score.
        for t in 0..tasks {
            // The first hidden buffer is no longer needed: it holds the sigmoid outputs.
            let z = &ws.logits[t].as_slice()[..n];
            let p = &mut ws.hidden[t][0].as_mut_slice()[..n];
            ops::sigmoid(z, p);
            for (r, &v) in p.iter().enumerate() {
                probs[r * tasks + t] = v;
            }
        }
        Ok(())
    }

    /// Checks lengths, offsets and strides (ids are checked while gathering).
    fn check_request(&self, req: &Request<'_>) -> Result<(), ModelError> {
        let n = req.candidates;
        let bad = |m: String| Err(ModelError::Request(m));
        if n.checked_mul(self.cand_single.len()) != Some(req.ids.len()) {
            return bad(format!(
                "{} candidate ids for {n} candidates x {} single-valued fields",
                req.ids.len(),
                self.cand_single.len()
            ));
        }
        if req.request_ids.len() != self.req_single.len() {
            return bad(format!(
                "{} request ids for {} single-valued request fields",
                req.request_ids.len(),
                self.req_single.len()
            ));
        }
        if req.bags.len() != self.cand_bags.len() || req.request_bags.len() != self.req_bags.len() {
            return bad(format!(
                "{} candidate bags and {} request bags, the model has {} and {}",
                req.bags.len(),
                req.request_bags.len(),
                self.cand_bags.len(),
                self.req_bags.len()
            ));
        }
        for (bag, plan, rows) in req
            .bags
            .iter()
            .zip(&self.cand_bags)
            .map(|(b, p)| (b, p, n))
            .chain(
                req.request_bags
                    .iter()
                    .zip(&self.req_bags)
                    .map(|(b, p)| (b, p, 1)),
            )
        {
            let name = &self.model.layout.fields[plan.field].name;
            if bag.offsets.len() != rows + 1 {
                return bad(format!(
                    "field {name:?}: {} offsets for {rows} rows (need rows + 1)",
                    bag.offsets.len()
                ));
            }
            if bag.offsets[0] != 0 || bag.offsets.windows(2).any(|w| w[0] > w[1]) {
                return bad(format!(
                    "field {name:?}: offsets must start at 0 and never decrease"
                ));
            }
            if bag.offsets[rows] != bag.ids.len() as u64 {
                return bad(format!(
                    "field {name:?}: last offset {} but {} ids",
                    bag.offsets[rows],
                    bag.ids.len()
                ));
            }
        }
        let d = self.model.layout.dense;
        if d > 0 && n > 0 {
            if req.dense_stride < d {
                return bad(format!(
                    "dense stride {} is below the {d} dense features",
                    req.dense_stride
                ));
            }
            let needed = (n - 1)
                .checked_mul(req.dense_stride)
                .and_then(|x| x.checked_add(d))
                .ok_or_else(|| {
                    ModelError::Request(format!(
                        "{n} candidates with dense stride {} overflow",
                        req.dense_stride
                    ))
                })?;
            if req.dense.len() < needed {
                return bad(format!(
                    "{} dense floats, {n} candidates need {needed}",
                    req.dense.len()
                ));
            }
            if req.dense[..needed].iter().any(|v| !v.is_finite()) {
                return bad("dense features contain NaN or infinity".into());
            }
        }
        Ok(())
    }

    /// Builds `x_req` and the first `n` rows of `x_cand` from embeddings and dense features.
    fn gather(&self, ws: &mut Workspace, req: &Request<'_>) -> Result<(), ModelError> {
        let n = req.candidates;
        let dim = self.model.config.embedding_dim;
        let (s_c, s_r) = (self.cand_single.len(), self.req_single.len());
        // Embedding rows are random reads: start the loads a few candidates ahead so the
        // cache misses overlap instead of queueing one after another.
        const AHEAD: usize = 4;
        for r in 0..n {
            if r + AHEAD < n {
                for (k, plan) in self.cand_single.iter().enumerate() {
                    let id = req.ids[(r + AHEAD) * s_c + k] as usize;
                    let table = &self.model.embeddings[plan.field];
                    if id < table.rows() {
                        tensor::arch::prefetch(table.row(id));
                    }
                }
            }
            let row = ws.x_cand.row_mut(r);
            for (k, plan) in self.cand_single.iter().enumerate() {
                self.lookup(
                    plan,
                    Some(r),
                    &req.ids[r * s_c + k..r * s_c + k + 1],
                    &mut row[plan.column..plan.column + dim],
                )?;
            }
            for (bag, plan) in req.bags.iter().zip(&self.cand_bags) {
                let ids = &bag.ids[bag.offsets[r] as usize..bag.offsets[r + 1] as usize];
                self.lookup(plan, Some(r), ids, &mut row[plan.column..plan.column + dim])?;
            }
            let d = self.model.layout.dense;
            if d > 0 {
                let start = self.cand_width - d;
                row[start..]
                    .copy_from_slice(&req.dense[r * req.dense_stride..r * req.dense_stride + d]);
            }
        }
        let row = ws.x_req.row_mut(0);
        for (k, plan) in self.req_single.iter().enumerate().take(s_r) {
            self.lookup(
                plan,
                None,
                &req.request_ids[k..k + 1],
                &mut row[plan.column..plan.column + dim],
            )?;
        }
        for (bag, plan) in req.request_bags.iter().zip(&self.req_bags) {
            let ids = &bag.ids[bag.offsets[0] as usize..bag.offsets[1] as usize];
            self.lookup(plan, None, ids, &mut row[plan.column..plan.column + dim])?;
        }
        Ok(())
    }

    /// Writes the pooled embedding of `ids` for `plan`'s field into `out`.
    fn lookup(
        &self,
        plan: &FieldPlan,
        row: Option<usize>,
        ids: &[u32],
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let field = &self.model.layout.fields[plan.field];
        let table = &self.model.embeddings[plan.field];
        if let [id] = ids {
            // A single-valued field: one row, copied.
            if *id < field.vocab {
                out.copy_from_slice(table.row(*id as usize));
                return Ok(());
            }
        }
        out.fill(0.0);
        for &id in ids {
            if id >= field.vocab {
                return Err(ModelError::IdOutOfRange {
                    field: field.name.clone(),
                    row,
                    id: id as u64,
                    vocab: field.vocab,
                });
            }
            for (o, &e) in out.iter_mut().zip(table.row(id as usize)) {
                *o += e;
            }
        }
        if field.bag == Some(Pooling::Mean) && !ids.is_empty() {
            let inv = 1.0 / ids.len() as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        }
        Ok(())
    }
}

/// The first `n` rows of `m`, read-only.
fn rows_ref(m: &Matrix, n: usize) -> MatRef<'_> {
    m.view().sub(0, 0, n, m.cols())
}

/// The first `n` rows of `m`, mutable.
fn rows_of(m: &mut Matrix, n: usize) -> MatMut<'_> {
    let cols = m.cols();
    m.view_mut().sub(0, 0, n, cols)
}
