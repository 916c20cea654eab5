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
        let (v, off) = self.push(Op::Prelu { x, slope }, n, c);
        let (before, out) = self.split_values(off, n * c);
        ops::prelu(&before[xo..xo + n * c], &before[so..so + c], out);
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, x: Var, slope: Var) -> Result<()> {
    let (sx, ss) = (t.slot(x), t.slot(slope));
    let (need_x, need_s) = (t.needs_grad(x), t.needs_grad(slope));
    let (values, before, gy) = parts(t, &node);
    let (xv, sv) = (&values[sx.0..sx.0 + sx.1], &values[ss.0..ss.0 + ss.1]);
    let c = sv.len();
    if need_x {
        // dx += dy (x > 0) or a dy (x <= 0); accumulated, since x may feed other ops too.
        let gx = &mut before[sx.0..sx.0 + sx.1];
        for ((gr, dr), xr) in gx
            .chunks_exact_mut(c)
            .zip(gy.chunks_exact(c))
            .zip(xv.chunks_exact(c))
        {
            for (((g, &d), &x), &a) in gr.iter_mut().zip(dr).zip(xr).zip(sv) {
                *g += if x > 0.0 { d } else { a * d };
            }
        }
    }
    if need_s {
        // da_c += sum over rows of dy x where x <= 0
        let gs = &mut before[ss.0..ss.0 + ss.1];
        for (dr, xr) in gy.chunks_exact(c).zip(xv.chunks_exact(c)) {
            for ((g, &d), &x) in gs.iter_mut().zip(dr).zip(xr) {
                *g += if x > 0.0 { 0.0 } else { d * x };
            }
        }
    }
    Ok(())
}
