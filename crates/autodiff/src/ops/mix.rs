//! Gated mixture: `y = sum_k g[:, k] * x_k`, each row of `K` inputs weighted by its own row
//! of a gate (the combination step of mixture-of-experts models and of attention over a few
//! vectors).
//!
//! Shapes: `x_k: N x C` (K of them), `g: N x K`, `y: N x C`.
//! Gradients: `dx_k[n, :] = g[n, k] dy[n, :]` and `dg[n, k] = dy[n, :] . x_k[n, :]`.
//! One op instead of K column splits, K products and K - 1 sums keeps the tape short.

use super::{Op, parts};
use crate::error::{AutodiffError, Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// `sum_k gate[:, k] * xs[k]`: row `n` of the result mixes row `n` of every input with
    /// the weights in row `n` of `gate` (`N x K` for `K` inputs of shape `N x C`).
    pub fn mix(&mut self, xs: &[Var], gate: Var) -> Result<Var> {
        let first = *xs.first().ok_or_else(|| AutodiffError::Invalid {
            op: "mix",
            detail: "no inputs".into(),
        })?;
        self.check("mix", gate)?;
        for &x in xs {
            self.check("mix", x)?;
            if self.shape(x) != self.shape(first) {
                return Err(shape_err(
                    "mix",
                    self.shape(first),
                    self.shape(x),
                    "inputs need the same shape",
                ));
            }
        }
        let (n, c) = self.shape(first);
        let k = xs.len();
        if self.shape(gate) != (n, k) {
            return Err(shape_err(
                "mix",
                (n, k),
                self.shape(gate),
                "the gate needs one row per input row and one column per input",
            ));
        }
        let start = self.lists.len();
        self.lists.extend_from_slice(xs);
        let go = self.slot(gate).0;
        let (v, off) = self.push(
            Op::Mix {
                start,
                len: k,
                gate,
            },
            n,
            c,
        );
        for i in 0..k {
            let xo = self.slot(self.lists[start + i]).0;
            let (before, out) = self.split_values(off, n * c);
            for r in 0..n {
                let g = before[go + r * k + i];
                let x = &before[xo + r * c..xo + (r + 1) * c];
                for (y, &x) in out[r * c..(r + 1) * c].iter_mut().zip(x) {
                    *y += g * x;
                }
            }
        }
        Ok(v)
    }
}

pub(super) fn backward(
    t: &mut Tape,
    node: Node,
    start: usize,
    len: usize,
    gate: Var,
) -> Result<()> {
    let (n, c, k) = (node.rows, node.cols, len);
    let gs = t.slot(gate);
    let need_gate = t.needs_grad(gate);
    for i in 0..k {
        let x = t.lists[start + i];
        let (s, need_x) = (t.slot(x), t.needs_grad(x));
        let (values, before, gy) = parts(t, &node);
        for r in 0..n {
            let dy = &gy[r * c..(r + 1) * c];
            if need_x {
                // dx_i = g[:, i] * dy
                let g = values[gs.0 + r * k + i];
                for (gx, &d) in before[s.0 + r * c..s.0 + (r + 1) * c].iter_mut().zip(dy) {
                    *gx += g * d;
                }
            }
            if need_gate {
                // dg[:, i] = dy . x_i
                let x = &values[s.0 + r * c..s.0 + (r + 1) * c];
                let dot: f32 = dy.iter().zip(x).map(|(d, x)| d * x).sum();
                before[gs.0 + r * k + i] += dot;
            }
        }
    }
    Ok(())
}
