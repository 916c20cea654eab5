//! Row-wise softmax: `y_j = e^(x_j) / sum_k e^(x_k)` per row (computed with the row
//! maximum subtracted, so nothing overflows).
//!
//! Gradient: the Jacobian of one row is `diag(y) - y y^T`, so
//! `dx_j = y_j (dy_j - sum_k dy_k y_k)`.

use tensor::ops;

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// Softmax over each row of `x`.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        self.check("softmax", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push(Op::Softmax { x }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::softmax_rows(&before[xo..xo + n * c], c, out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let s = t.slot(x);
    let (yo, c) = (node.off, node.cols);
    let (values, before, gy) = parts(t, &node);
    let y = &values[yo..yo + gy.len()];
    let gx = &mut before[s.0..s.0 + s.1];
    for ((gr, dr), yr) in gx
        .chunks_exact_mut(c.max(1))
        .zip(gy.chunks_exact(c.max(1)))
        .zip(y.chunks_exact(c.max(1)))
    {
        let dot: f32 = dr.iter().zip(yr).map(|(d, y)| d * y).sum();
        for ((g, &d), &y) in gr.iter_mut().zip(dr).zip(yr) {
            *g += y * (d - dot);
        }
    }
    Ok(())
}
