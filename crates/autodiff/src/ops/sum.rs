//! Reductions: the sum (or mean) of every element to a `1 x 1` scalar, and per-row sums
//! `N x C -> N x 1`.
//!
//! Gradients: every element of `x` receives `dy` (sum) or `dy / count` (mean); for row
//! sums, every element of row `n` receives `dy_n`. Sums are accumulated in f64 so long
//! reductions stay exact to f32 precision.

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// Sum of all elements, `1 x 1`.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, false)
    }

    /// Mean of all elements, `1 x 1` (0 for an empty input).
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        self.reduce(x, true)
    }

    fn reduce(&mut self, x: Var, mean: bool) -> Result<Var> {
        self.check(if mean { "mean" } else { "sum" }, x)?;
        let (xo, len) = self.slot(x);
        let (v, off) = self.push(Op::Sum { x, mean }, 1, 1);
        let (before, out) = self.split_values(off, 1);
        let s: f64 = before[xo..xo + len].iter().map(|&v| v as f64).sum();
        out[0] = if mean && len > 0 {
            (s / len as f64) as f32
        } else {
            s as f32
        };
        Ok(v)
    }

    /// Sum of each row, `N x 1`.
    pub fn sum_cols(&mut self, x: Var) -> Result<Var> {
        self.check("sum_cols", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push(Op::SumCols { x }, n, 1);
        let (before, out) = self.split_values(off, n);
        for (r, o) in out.iter_mut().enumerate() {
            *o = before[xo + r * c..xo + (r + 1) * c]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>() as f32;
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, mean: bool) -> Result<()> {
    let s = t.slot(x);
    let (_, before, gy) = parts(t, &node);
    let d = if mean && s.1 > 0 {
        gy[0] / s.1 as f32
    } else {
        gy[0]
    };
    before[s.0..s.0 + s.1].iter_mut().for_each(|g| *g += d);
    Ok(())
}

pub(super) fn backward_cols(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let (c, s) = (t.shape(x).1, t.slot(x));
    let (_, before, gy) = parts(t, &node);
    for (r, &d) in gy.iter().enumerate() {
        before[s.0 + r * c..s.0 + (r + 1) * c]
            .iter_mut()
            .for_each(|g| *g += d);
    }
    Ok(())
}
