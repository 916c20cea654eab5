//! Linear layer: `y = x W + b`.
//!
//! Shapes: `x: N x I`, `W: I x O`, `b: 1 x O` (optional), `y: N x O`.
//!
//! Gradients, from `y_nj = sum_i x_ni W_ij + b_j`:
//! - `dL/dx_ni = sum_j dy_nj W_ij`, i.e. `dX = dY W^T`;
//! - `dL/dW_ij = sum_n x_ni dy_nj`, i.e. `dW = X^T dY`;
//! - `dL/db_j = sum_n dy_nj`, the column sums of `dY`.
//!
//! Both transposes are views (strides swapped), not copies; both products accumulate
//! (`beta = 1`) into the gradient arena.

use tensor::{MatMut, MatRef, Tier, gemm_with, ops};

use super::Op;
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `y = x W + b` for `x: N x I`, `w: I x O`, `b: 1 x O`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        self.check("linear", x)?;
        self.check("linear", w)?;
        let ((n, i), (wi, o)) = (self.shape(x), self.shape(w));
        if i != wi {
            return Err(shape_err(
                "linear",
                (n, i),
                (wi, o),
                "x is N x I, W must be I x O",
            ));
        }
        if let Some(b) = b {
            self.check("linear", b)?;
            if self.shape(b) != (1, o) {
                return Err(shape_err(
                    "linear",
                    (wi, o),
                    self.shape(b),
                    "the bias must be 1 x O",
                ));
            }
        }
        let ((xo, _), (wo, _)) = (self.slot(x), self.slot(w));
        let bo = b.map(|b| self.slot(b).0);
        let (v, off) = self.push_overwritten(Op::Linear { x, w, b }, n, o);
        let (before, out) = self.values.split_at_mut(off);
        let out = &mut out[..n * o];
        let xm = MatRef::from_slice(&before[xo..xo + n * i], n, i, i)?;
        let wm = MatRef::from_slice(&before[wo..wo + i * o], i, o, o)?;
        let c = MatMut::from_slice(out, n, o, o)?;
        gemm_with(Tier::active(), 1.0, xm, wm, 0.0, c, &mut self.gemm)?;
        if let Some(bo) = bo {
            ops::add_bias_rows(out, &before[bo..bo + o]);
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, w: Var, b: Option<Var>) -> Result<()> {
    let (n, o) = (node.rows, node.cols);
    let i = t.shape(x).1;
    let (xs, ws) = (t.slot(x), t.slot(w));
    let (gx_needed, gw_needed) = (t.needs_grad(x), t.needs_grad(w));
    let (values, grads, scratch) = (&t.values, &mut t.grads, &mut t.gemm);
    let tier = Tier::active();
    let (before, after) = grads.split_at_mut(node.off);
    let gy = MatRef::from_slice(&after[..n * o], n, o, o)?;
    let xm = MatRef::from_slice(&values[xs.0..xs.0 + xs.1], n, i, i)?;
    let wm = MatRef::from_slice(&values[ws.0..ws.0 + ws.1], i, o, o)?;
    if gx_needed {
        // dX += dY W^T
        gemm_with(
            tier,
            1.0,
            gy,
            wm.t(),
            1.0,
            MatMut::from_slice(&mut before[xs.0..xs.0 + xs.1], n, i, i)?,
            scratch,
        )?;
    }
    if gw_needed {
        // dW += X^T dY
        gemm_with(
            tier,
            1.0,
            xm.t(),
            gy,
            1.0,
            MatMut::from_slice(&mut before[ws.0..ws.0 + ws.1], i, o, o)?,
            scratch,
        )?;
    }
    if let Some(b) = b {
        // db += column sums of dY
        let (bo, _) = t.slot(b);
        let (before, after) = t.grads.split_at_mut(node.off);
        ops::add_col_sums(&after[..n * o], &mut before[bo..bo + o]);
    }
    Ok(())
}
