//! Stop-gradient: `y = x` in value, a constant for the backward pass (no gradient flows
//! into `x` through `y`). Recorded as a leaf holding a copy of `x`'s value.
//!
//! Inverse propensity weights use it: the propensity comes from the click tower, which
//! its own loss trains; the weighted conversion loss must not pull it.

use super::Op;
use crate::error::Result;
use crate::tape::{Tape, Var};

impl Tape {
    /// `x`'s value as a new leaf, outside the gradient's path.
    pub fn stop_gradient(&mut self, x: Var) -> Result<Var> {
        self.check("stop_gradient", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(Op::Leaf, n, c);
        let (before, out) = self.split_values(off, n * c);
        out.copy_from_slice(&before[xo..xo + n * c]);
        Ok(v)
    }
}
