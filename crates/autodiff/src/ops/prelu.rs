//! PReLU with one learned slope per column: `y = x` where `x > 0`, else `a_c x`.
//!
//! Shapes: `x: N x C`, `slope: 1 x C`, `y: N x C`.
//! Gradients: `dx = dy` where `x > 0`, else `a_c dy`; `da_c = sum_n dy_nc x_nc` over the
//! rows where `x_nc <= 0` (the only place the slope acts).

use tensor::ops;

use super::{Op, parts};
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// PReLU of `x: N x C` with slopes `1 x C`.
    pub fn prelu(&mut self, x: Var, slope: Var) -> Result<Var> {
        self.check("prelu", x)?;
        self.check("prelu", slope)?;
        let ((n, c), ss) = (self.shape(x), self.shape(slope));
        if ss != (1, c) {
            return Err(shape_err("prelu", (n, c), ss, "slopes must be 1 x C"));
        }
        let ((xo, _), (so, _)) = (self.slot(x), self.slot(slope));
        let (v, off) = self.push_overwritten(Op::Prelu { x, slope }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::prelu(&before[xo..xo + n * c], &before[so..so + c], out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, slope: Var) -> Result<()> {
    let (sx, ss) = (t.slot(x), t.slot(slope));
    let (values, before, gy) = parts(t, &node);
    let (xv, sv) = (&values[sx.0..sx.0 + sx.1], &values[ss.0..ss.0 + ss.1]);
    // x precedes the slope on the tape or the other way round: borrow both gradient slots.
    let (gx, gs) = if sx.0 < ss.0 {
        let (a, b) = before.split_at_mut(ss.0);
        (&mut a[sx.0..sx.0 + sx.1], &mut b[..ss.1])
    } else {
        let (a, b) = before.split_at_mut(sx.0);
        (&mut b[..sx.1], &mut a[ss.0..ss.0 + ss.1])
    };
    // dx += dy (x > 0) or a dy (x <= 0); da_c += sum over rows of dy x where x <= 0.
    ops::prelu_backward_add(xv, sv, gy, gx, gs);
    Ok(())
}
