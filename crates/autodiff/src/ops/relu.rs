//! ReLU: `y = max(x, 0)`. Gradient: `dx = dy` where `x > 0`, else 0 (the subgradient 0
//! is taken at `x = 0`).

use tensor::ops;

use super::{Op, parts};
use crate::error::Result;
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `max(x, 0)` element-wise.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.check("relu", x)?;
        let ((n, c), (xo, _)) = (self.shape(x), self.slot(x));
        let (v, off) = self.push_overwritten(Op::Relu { x }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::relu(&before[xo..xo + n * c], out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var) -> Result<()> {
    let s = t.slot(x);
    let (values, before, gy) = parts(t, &node);
    let xv = &values[s.0..s.0 + s.1];
    for ((g, &d), &xv) in before[s.0..s.0 + s.1].iter_mut().zip(gy).zip(xv) {
        if xv > 0.0 {
            *g += d;
        }
    }
    Ok(())
}
