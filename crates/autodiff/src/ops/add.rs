//! Addition: `y = a + b`, element-wise, or `y = a + row` with a `1 x C` row broadcast to
//! every row of `a` (a bias).
//!
//! Shapes: `a: N x C`, `b: N x C` or `1 x C`, `y: N x C`.
//! Gradients: `da = dy`; `db = dy` (same shape) or the column sums of `dy` (broadcast),
//! because each element of the row was added into N outputs.

use tensor::ops;

use super::{Op, grad_pair};
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `a + b` (same shapes) or `a + b` with `b: 1 x C` added to every row.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.check("add", a)?;
        self.check("add", b)?;
        let ((n, c), sb) = (self.shape(a), self.shape(b));
        if sb != (n, c) && sb != (1, c) {
            return Err(shape_err("add", (n, c), sb, "b must be N x C or 1 x C"));
        }
        let ((ao, _), (bo, bl)) = (self.slot(a), self.slot(b));
        let (v, off) = self.push_overwritten(Op::Add { a, b }, n, c);
        let (before, out) = self.split_values(off, n * c);
        out.copy_from_slice(&before[ao..ao + n * c]);
        if sb == (n, c) {
            ops::axpy(1.0, &before[bo..bo + bl], out);
        } else {
            ops::add_bias_rows(out, &before[bo..bo + bl]);
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, a: Var, b: Var) -> Result<()> {
    if t.needs_grad(a) {
        let s = t.slot(a);
        let (ga, gy) = grad_pair(t, &node, s);
        ops::axpy(1.0, gy, ga);
    }
    if t.needs_grad(b) {
        let s = t.slot(b);
        let broadcast = t.shape(b).0 != node.rows;
        let (gb, gy) = grad_pair(t, &node, s);
        if broadcast {
            ops::add_col_sums(gy, gb);
        } else {
            ops::axpy(1.0, gy, gb);
        }
    }
    Ok(())
}
