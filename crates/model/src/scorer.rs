//! The scorer: a request of N candidates in, per-task probabilities and a fused ranking
//! score out, with no allocation once its workspace has grown to the largest request.
//!
//! ```text
//! request fields (once)    ids --lookup/pool--> x_req  (1 x R)
//! candidate fields         ids --lookup/pool--> x_cand (N x C), dense features appended
//! the model's plan         x_cand, x_req --steps (plan.rs)--> one N x 1 logit per task
//! p_t = sigmoid(z_t);      fused score = sum_t w_t p_t   or   prod_t p_t ^ w_t
//! ```
//!
//! A regression model's fused score is its predicted value instead
//! ([`crate::regression::Decoder`]): the expected value of the chained thresholds from
//! the `p_t = P(y > t_t)`, or `mean + std * z` for the direct form.
//!
//! The first layers are where the work is: their input is the concatenation of every
//! field's embedding. Their product splits by rows of W into the part from fields that are
//! the same for every candidate of a request (user, context: `request_fields` in the
//! configuration) and the rest; the plan computes the request part once per request
//! instead of N times, for every model kind whose layers read the input.

use tensor::{Matrix, ops};

use crate::error::ModelError;
use crate::model::Model;
use crate::plan::{BLOCK_ROWS, InputSplit, Plan, PlanBuffers};
use crate::precision::Precision;

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

/// Scores requests for one [`Model`]; immutable, shareable across threads.
#[derive(Debug, Clone)]
pub struct Scorer {
    model: Model,
    cand_single: Vec<FieldPlan>,
    cand_bags: Vec<FieldPlan>,
    req_single: Vec<FieldPlan>,
    req_bags: Vec<FieldPlan>,
    cand_width: usize,
    req_width: usize,
    plan: Plan,
    fusion: Vec<f32>,
    /// A regression model's decoder: the fused score is the predicted value.
    decoder: Option<crate::regression::Decoder>,
}

/// Per-thread buffers of a [`Scorer`]; they grow to the largest request and are reused.
/// A workspace holds every buffer a request needs, the GEMMs' packing scratch included, so
/// it can move between threads.
#[derive(Debug, Default)]
pub struct Workspace {
    capacity: usize,
    x_cand: Matrix,
    x_req: Matrix,
    /// One task's probabilities.
    probs: Matrix,
    plan: PlanBuffers,
}

impl Workspace {
    /// The largest request (in candidates) the buffers hold without growing: `usize::MAX`
    /// once they hold a full block of candidates, since a larger request goes through the
    /// same buffers a block at a time.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Scorer {
    /// Prepares a scorer: checks the model, groups its fields, and compiles its plan (in
    /// f32).
    pub fn new(model: Model) -> Result<Self, ModelError> {
        Self::with_precision(model, Precision::F32)
    }

    /// [`Scorer::new`] with the plan's GEMMs in `precision` ([`Precision::Int8`]: about
    /// twice the multiply rate on AVX2, scores within the accuracy measured in
    /// docs/resflow.md).
    pub fn with_precision(model: Model, precision: Precision) -> Result<Self, ModelError> {
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

        let rows =
            |ranges: &[std::ops::Range<usize>]| ranges.iter().flat_map(|r| r.clone()).collect();
        let split = InputSplit {
            cand_rows: rows(&cand_rows),
            req_rows: rows(&req_rows),
        };
        let plan = Plan::compile(&model, &split, precision)?;
        let fusion = model.config.fusion_weights();
        let decoder = match &model.config.regression {
            Some(r) => Some(r.decoder()?),
            None => None,
        };
        Ok(Self {
            model,
            cand_single,
            cand_bags,
            req_single,
            req_bags,
            cand_width,
            req_width,
            plan,
            fusion,
            decoder,
        })
    }

    /// The compiled plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The arithmetic of the plan's GEMMs.
    pub fn precision(&self) -> Precision {
        self.plan.precision()
    }

    /// The model being served.
    pub fn model(&self) -> &Model {
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
        // Candidates go through the plan a block at a time, so the buffers hold one block
        // (or the whole request, when it is smaller).
        let rows = n.clamp(1, BLOCK_ROWS);
        if ws.x_cand.rows() < rows || ws.x_req.cols() != self.req_width {
            let rows = rows.max(ws.x_cand.rows());
            ws.x_cand = Matrix::zeros(rows, self.cand_width);
            ws.x_req = Matrix::zeros(1, self.req_width);
            ws.probs = Matrix::zeros(rows, 1);
        }
        self.plan.reserve(&mut ws.plan, ws.x_cand.rows());
        ws.capacity = if ws.x_cand.rows() >= BLOCK_ROWS {
            usize::MAX
        } else {
            ws.capacity.max(n)
        };
    }

    /// Scores one request into `probs` (`N x T`, row-major) and `fused` (`N`: the fused
    /// ranking score, or a regression model's predicted value).
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
        self.gather_request(ws, req)?;
        self.plan.run_request(&mut ws.plan, ws.x_req.view())?;
        let block = ws.x_cand.rows();
        for r0 in (0..n).step_by(block) {
            let rows = block.min(n - r0);
            self.gather(ws, req, r0, rows)?;
            self.plan.run(
                &mut ws.plan,
                ws.x_cand.view().sub(0, 0, rows, self.cand_width),
                rows,
            )?;
            // Probabilities, interleaved N x T.
            for t in 0..tasks {
                let p = &mut ws.probs.as_mut_slice()[..rows];
                ops::sigmoid(self.plan.logit(&ws.plan, t, rows), p);
                for (r, &v) in p.iter().enumerate() {
                    probs[(r0 + r) * tasks + t] = v;
                }
            }
            // The direct regression head's value, from this block's logit.
            if let Some(d @ crate::regression::Decoder::Direct { .. }) = &self.decoder {
                let z = self.plan.logit(&ws.plan, 0, rows);
                for (r, f) in fused[r0..r0 + rows].iter_mut().enumerate() {
                    *f = d.value_from_logits(&z[r..r + 1]);
                }
            }
        }
        if let Some(d) = &self.decoder {
            if matches!(d, crate::regression::Decoder::Thresholds { .. }) {
                for (r, f) in fused.iter_mut().enumerate().take(n) {
                    *f = d
                        .value_from_probabilities(&probs[r * tasks..(r + 1) * tasks])
                        .expect("the thresholds form");
                }
            }
            return Ok(());
        }
        let weights = &self.fusion;
        for (r, f) in fused.iter_mut().enumerate().take(n) {
            let p = &probs[r * tasks..(r + 1) * tasks];
            *f = metrics::fuse_row(p, weights, self.model.config.fusion.kind);
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
        self.check_ids(req)?;
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

    /// Checks every id against its table before any work starts, so a request is either
    /// scored whole or refused with nothing written.
    fn check_ids(&self, req: &Request<'_>) -> Result<(), ModelError> {
        let fields = &self.model.layout.fields;
        let out_of_range = |plan: &FieldPlan, row: Option<usize>, id: u32| {
            let field = &fields[plan.field];
            ModelError::IdOutOfRange {
                field: field.name.clone(),
                row,
                id: id as u64,
                vocab: field.vocab,
            }
        };
        let s_c = self.cand_single.len();
        if s_c > 0 {
            for (r, ids) in req.ids.chunks_exact(s_c).enumerate() {
                for (plan, &id) in self.cand_single.iter().zip(ids) {
                    if id >= fields[plan.field].vocab {
                        return Err(out_of_range(plan, Some(r), id));
                    }
                }
            }
        }
        for (bag, plan) in req.bags.iter().zip(&self.cand_bags) {
            let vocab = fields[plan.field].vocab;
            if let Some(at) = bag.ids.iter().position(|&id| id >= vocab) {
                // The row that owns position `at`: the last offset at or before it.
                let row = bag.offsets.partition_point(|&o| o <= at as u64) - 1;
                return Err(out_of_range(plan, Some(row), bag.ids[at]));
            }
        }
        for (plan, &id) in self.req_single.iter().zip(req.request_ids) {
            if id >= fields[plan.field].vocab {
                return Err(out_of_range(plan, None, id));
            }
        }
        for (bag, plan) in req.request_bags.iter().zip(&self.req_bags) {
            let vocab = fields[plan.field].vocab;
            if let Some(&id) = bag.ids.iter().find(|&&id| id >= vocab) {
                return Err(out_of_range(plan, None, id));
            }
        }
        Ok(())
    }

    /// Builds rows `r0..r0 + rows` of the request's candidates into the first rows of
    /// `x_cand`, from embeddings and dense features.
    fn gather(
        &self,
        ws: &mut Workspace,
        req: &Request<'_>,
        r0: usize,
        rows: usize,
    ) -> Result<(), ModelError> {
        let n = req.candidates;
        let dim = self.model.config.embedding_dim;
        let s_c = self.cand_single.len();
        // Embedding rows are random reads: their loads are started ahead so the cache
        // misses overlap instead of queueing one after another. Single-valued ids are
        // row-major, `n x s_c`: flat position `j` is candidate `j / s_c`, field `j % s_c`,
        // and copying the row at `j` first asks for the one at `j + ROW_AHEAD`, so the
        // same number of rows is in flight whatever the number of fields. The first
        // block starts by asking for the first ROW_AHEAD rows; later blocks' first rows
        // were asked for at the end of the block before.
        const ROW_AHEAD: usize = 12;
        // Bags' rows are asked for BAG_AHEAD candidates ahead.
        const BAG_AHEAD: usize = 2;
        let total = n * s_c;
        if s_c > 0 && r0 == 0 {
            for (j, &id) in req.ids[..ROW_AHEAD.min(total)].iter().enumerate() {
                prefetch_row(self.table_row(self.cand_single[j % s_c].field, id as usize));
            }
        }
        let mut ahead = r0 * s_c + ROW_AHEAD;
        let mut k_ahead = if s_c > 0 { ahead % s_c } else { 0 };
        for r in r0..r0 + rows {
            if r + BAG_AHEAD < n {
                let a = r + BAG_AHEAD;
                for (bag, plan) in req.bags.iter().zip(&self.cand_bags) {
                    let (lo, hi) = (bag.offsets[a] as usize, bag.offsets[a + 1] as usize);
                    for &id in &bag.ids[lo..hi] {
                        prefetch_row(self.table_row(plan.field, id as usize));
                    }
                }
            }
            let row = ws.x_cand.row_mut(r - r0);
            for (plan, &id) in self
                .cand_single
                .iter()
                .zip(&req.ids[r * s_c..(r + 1) * s_c])
            {
                if ahead < total {
                    // Ids were checked by check_ids, so the row exists.
                    let f = self.cand_single[k_ahead].field;
                    prefetch_row(self.table_row(f, req.ids[ahead] as usize));
                    ahead += 1;
                    k_ahead += 1;
                    if k_ahead == s_c {
                        k_ahead = 0;
                    }
                }
                // Ids were checked by check_ids: a single-valued field is one row, copied.
                let src = self.table_row(plan.field, id as usize);
                copy_row(&mut row[plan.column..plan.column + dim], src);
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
        Ok(())
    }

    /// Builds `x_req`, the request-level fields' embeddings.
    fn gather_request(&self, ws: &mut Workspace, req: &Request<'_>) -> Result<(), ModelError> {
        let dim = self.model.config.embedding_dim;
        let row = ws.x_req.row_mut(0);
        for (k, plan) in self.req_single.iter().enumerate() {
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

    /// Row `id` of `field`'s embedding table.
    #[inline(always)]
    fn table_row(&self, field: usize, id: usize) -> &[f32] {
        self.model.embeddings[field].row(id)
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
        if let [id] = ids {
            // A single-valued field: one row, copied.
            if *id < field.vocab {
                out.copy_from_slice(self.table_row(plan.field, *id as usize));
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
            for (o, &e) in out.iter_mut().zip(self.table_row(plan.field, id as usize)) {
                *o += e;
            }
        }
        if let Some(w) = field.bag.map(|p| p.row_weight(ids.len()))
            && w != 1.0
        {
            out.iter_mut().for_each(|o| *o *= w);
        }
        Ok(())
    }
}

/// Asks for an embedding row's cache lines: one prefetch per 64 bytes from its start (a
/// 32-float row on a 64-byte boundary is exactly two lines).
#[inline(always)]
fn prefetch_row(row: &[f32]) {
    for line in row.chunks(16) {
        tensor::arch::prefetch(line);
    }
}

/// `dst = src` for one embedding row, in 8-float pieces the compiler turns into vector
/// moves: a `copy_from_slice` of a length known only at run time is a call to `memcpy`,
/// which was 6% of the cycles of scoring 500 candidates (`perf record` on
/// `resflow bench score`, Zen 3) for rows of 32 floats.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}
