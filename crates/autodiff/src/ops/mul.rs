//! Element-wise product: `y = a * b` (same shapes), or `y = a * col` with an `N x 1`
//! column broadcast across each row (a per-row gate weight, as in mixture-of-experts).
//!
//! Shapes: `a: N x C`, `b: N x C` or `N x 1`, `y: N x C`.
//! Gradients: `da = dy * b`; `db = dy * a` (same shape) or `db_n = sum_c dy_nc a_nc`
//! (broadcast: the weight multiplied every element of its row).

use super::{Op, parts};
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `a * b` element-wise, or each row of `a` times the matching entry of `b: N x 1`.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.check("mul", a)?;
        self.check("mul", b)?;
        let ((n, c), sb) = (self.shape(a), self.shape(b));
        if sb != (n, c) && sb != (n, 1) {
            return Err(shape_err("mul", (n, c), sb, "b must be N x C or N x 1"));
        }
        let ((ao, _), (bo, _)) = (self.slot(a), self.slot(b));
        let (v, off) = self.push(Op::Mul { a, b }, n, c);
        let (before, out) = self.split_values(off, n * c);
        let (av, bw) = (&before[ao..ao + n * c], sb.1);
        for r in 0..n {
            for j in 0..c {
                let bv = if bw == c {
                    before[bo + r * c + j]
                } else {
                    before[bo + r]
                };
                out[r * c + j] = av[r * c + j] * bv;
            }
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, a: Var, b: Var) -> Result<()> {
    let (n, c) = (node.rows, node.cols);
    let (sa, sb) = (t.slot(a), t.slot(b));
    let col = t.shape(b).1 != c;
    let (need_a, need_b) = (t.needs_grad(a), t.needs_grad(b));
    let (values, before, gy) = parts(t, &node);
    let (av, bv) = (&values[sa.0..sa.0 + sa.1], &values[sb.0..sb.0 + sb.1]);
    if need_a {
        // da = dy * b
        let ga = &mut before[sa.0..sa.0 + sa.1];
        for r in 0..n {
            for j in 0..c {
                ga[r * c + j] += gy[r * c + j] * if col { bv[r] } else { bv[r * c + j] };
            }
        }
    }
    if need_b {
        // db = dy * a, summed over the row when b was broadcast
        let gb = &mut before[sb.0..sb.0 + sb.1];
        for r in 0..n {
            for j in 0..c {
                let g = gy[r * c + j] * av[r * c + j];
                if col {
                    gb[r] += g;
                } else {
                    gb[r * c + j] += g;
                }
            }
        }
    }
    Ok(())
}
