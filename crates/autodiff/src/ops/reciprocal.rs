//! Reciprocal: `y = 1 / x`. Gradient: `dx = -dy y^2`.
//!
//! Inverse propensity weights `1 / p` are its use; callers clamp `p` away from 0 first (a
//! zero input gives an infinite value, which the trainer's finiteness checks refuse).

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `1 / x` element-wise.
    pub fn reciprocal(&mut self, x: Var) -> Result<Var> {
        self.check("reciprocal", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(Op::Reciprocal { x }, n, c);
        let (before, out) = self.split_values(off, n * c);
        for (y, &x) in out.iter_mut().zip(&before[xo..xo + n * c]) {
            *y = 1.0 / x;
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let s = t.slot(x);
    let yo = node.off;
    let (values, before, gy) = parts(t, &node);
    let y = &values[yo..yo + gy.len()];
    for ((g, &d), &y) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(y) {
        *g -= d * y * y;
    }
    Ok(())
}
