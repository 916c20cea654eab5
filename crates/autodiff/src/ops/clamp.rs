//! Clamp: `y = min(max(x, lo), hi)`. Gradient: `dx = dy` where `lo < x < hi`, else 0 (the
//! subgradient 0 is taken at the bounds).
//!
//! Used to keep a propensity inside `[clip, 1 - clip]` before it is inverted.

use super::{Op, parts};
use crate::error::{AutodiffError, Result};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `x` clamped into `[lo, hi]` element-wise; `lo <= hi`, both finite.
    pub fn clamp(&mut self, x: Var, lo: f32, hi: f32) -> Result<Var> {
        self.check("clamp", x)?;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(AutodiffError::Invalid {
                op: "clamp",
                detail: format!("bounds [{lo}, {hi}] must be finite and ordered"),
            });
        }
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(Op::Clamp { x, lo, hi }, n, c);
        let (before, out) = self.split_values(off, n * c);
        for (y, &x) in out.iter_mut().zip(&before[xo..xo + n * c]) {
            // NaN stays NaN (f32::clamp would keep it too); the trainer refuses it.
            *y = x.clamp(lo, hi);
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, lo: f32, hi: f32) -> Result<()> {
    let s = t.slot(x);
    let (values, before, gy) = parts(t, &node);
    let xv = &values[s.0..s.0 + s.1];
    for ((g, &d), &xv) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(xv) {
        if lo < xv && xv < hi {
            *g += d;
        }
    }
    Ok(())
}
