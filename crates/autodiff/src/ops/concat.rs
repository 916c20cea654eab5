//! Concatenation along features: `y = [x_0 | x_1 | ...]` for inputs with the same rows.
//!
//! Shapes: `x_k: N x C_k`, `y: N x sum C_k`. Gradient: each input receives its own block of
//! columns of `dy`.

use super::{Op, parts};
use crate::error::{AutodiffError, Result, shape_err};
use crate::tape::{Node, Tape, Var};

impl Tape {
    /// The inputs side by side (same number of rows).
    pub fn concat(&mut self, xs: &[Var]) -> Result<Var> {
        let first = *xs.first().ok_or_else(|| AutodiffError::Invalid {
            op: "concat",
            detail: "no inputs".into(),
        })?;
        for &x in xs {
            self.check("concat", x)?;
            if self.shape(x).0 != self.shape(first).0 {
                return Err(shape_err(
                    "concat",
                    self.shape(first),
                    self.shape(x),
                    "inputs need the same rows",
                ));
            }
        }
        let n = self.shape(first).0;
        let c: usize = xs.iter().map(|&x| self.shape(x).1).sum();
        let start = self.lists.len();
        self.lists.extend_from_slice(xs);
        let (v, off) = self.push_overwritten(
            Op::Concat {
                start,
                len: xs.len(),
            },
            n,
            c,
        );
        let mut col = 0;
        for k in start..start + xs.len() {
            let x = self.lists[k];
            let ((_, w), (xo, _)) = (self.shape(x), self.slot(x));
            let (before, out) = self.split_values(off, n * c);
            for r in 0..n {
                out[r * c + col..r * c + col + w]
                    .copy_from_slice(&before[xo + r * w..xo + (r + 1) * w]);
            }
            col += w;
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, start: usize, len: usize) -> Result<()> {
    let (n, c) = (node.rows, node.cols);
    let mut col = 0;
    for k in start..start + len {
        let x = t.lists[k];
        let (w, s, need) = (t.shape(x).1, t.slot(x), t.needs_grad(x));
        if need {
            // Usually the concatenation is the input's only reader, and its slot is not
            // written yet: `0 + d` then (the bits of `+=` into zero), with no zeroing.
            let fresh = t.take_fresh_grad(x);
            let (_, before, gy) = parts(t, &node);
            let gx = &mut before[s.0..s.0 + s.1];
            for r in 0..n {
                let rows = gx[r * w..(r + 1) * w]
                    .iter_mut()
                    .zip(&gy[r * c + col..r * c + col + w]);
                if fresh {
                    rows.for_each(|(g, &d)| *g = 0.0 + d);
                } else {
                    rows.for_each(|(g, &d)| *g += d);
                }
            }
        }
        col += w;
    }
    Ok(())
}
