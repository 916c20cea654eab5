//! Column slice: `y = x[:, col..col + cols]`, one block of a concatenation.
//!
//! Gradient: `dy` goes back into the same block of `dx`; the other columns get nothing.

use super::{Op, parts};
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// Columns `col..col + cols` of `x`.
    pub fn split(&mut self, x: Var, col: usize, cols: usize) -> Result<Var> {
        self.check("split", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        if col + cols > c {
            return Err(shape_err(
                "split",
                (n, c),
                (col, cols),
                "(start, width) must lie within the columns",
            ));
        }
        let (v, off) = self.push(Op::Split { x, col }, n, cols);
        let (before, out) = self.split_values(off, n * cols);
        for r in 0..n {
            out[r * cols..(r + 1) * cols]
                .copy_from_slice(&before[xo + r * c + col..xo + r * c + col + cols]);
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, col: usize) -> Result<()> {
    let ((n, c), s, w) = (t.shape(x), t.slot(x), node.cols);
    let (_, before, gy) = parts(t, &node);
    let gx = &mut before[s.0..s.0 + s.1];
    for r in 0..n {
        for (g, &d) in gx[r * c + col..r * c + col + w]
            .iter_mut()
            .zip(&gy[r * w..(r + 1) * w])
        {
            *g += d;
        }
    }
    Ok(())
}
