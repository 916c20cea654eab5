//! Scaling by a constant: `y = alpha x`. Gradient: `dx = alpha dy`.

use tensor::ops;

use super::{Op, grad_pair};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `alpha * x`.
    pub fn scale(&mut self, x: Var, alpha: f32) -> Result<Var> {
        self.check("scale", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push(Op::Scale { x, alpha }, n, c);
        let (before, out) = self.split_values(off, n * c);
        out.copy_from_slice(&before[xo..xo + n * c]);
        ops::scale(alpha, out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, alpha: f32) -> Result<()> {
    let s = t.slot(x);
    let (gx, gy) = grad_pair(t, &node, s);
    ops::axpy(alpha, gy, gx);
    Ok(())
}
