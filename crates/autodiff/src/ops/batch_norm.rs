//! BatchNorm over the rows of `x: N x C`, one mean and variance per column.
//!
//! Forward: `xhat = (x - mu) / sqrt(var + eps)`, `y = gamma xhat + beta`, where in training
//! mode `mu` and `var` (biased) are the batch's, and in inference mode they are given (the
//! running averages; the authors' frozen form uses 0 and 1).
//!
//! Backward with `s = 1 / sqrt(var + eps)`:
//! - `dbeta_c = sum_n dy_nc`, `dgamma_c = sum_n dy_nc xhat_nc`;
//! - inference mode (statistics are constants): `dx = gamma s dy`;
//! - training mode, the statistics depend on `x` too. With `g = gamma dy`:
//!   `dvar = sum_n g_n (x_n - mu) (-1/2) s^3` and `dmu = -s sum_n g_n + dvar (-2/N) sum_n (x_n - mu)`,
//!   where the last sum is 0. Substituting into `dx_n = g_n s + dvar 2 (x_n - mu) / N + dmu / N`
//!   gives the usual closed form
//!   `dx_n = (gamma s / N) (N dy_n - sum_m dy_m - xhat_n sum_m dy_m xhat_m)`.
//!
//! Column sums are accumulated in f64.

use tensor::ops;

use super::{Op, parts};
use crate::error::{AutodiffError, Result, shape_err};
use crate::tape::{Node, Tape, Var};

/// Where the normalisation statistics come from.
#[derive(Debug, Clone, Copy)]
pub enum BatchNormMode<'a> {
    /// The batch's own mean and (biased) variance; they are saved for
    /// [`Tape::batch_stats`] so a trainer can update running averages.
    Train {
        /// Added to the variance.
        eps: f32,
    },
    /// Given statistics, treated as constants.
    Eval {
        /// Per-column mean.
        mean: &'a [f32],
        /// Per-column variance.
        var: &'a [f32],
        /// Added to the variance.
        eps: f32,
    },
}

impl Tape {
    /// BatchNorm of `x: N x C` with scale `gamma: 1 x C` and shift `beta: 1 x C`.
    pub fn batch_norm(
        &mut self,
        x: Var,
        gamma: Var,
        beta: Var,
        mode: BatchNormMode<'_>,
    ) -> Result<Var> {
        for v in [x, gamma, beta] {
            self.check("batch_norm", v)?;
        }
        let (n, c) = self.shape(x);
        for p in [gamma, beta] {
            if self.shape(p) != (1, c) {
                return Err(shape_err(
                    "batch_norm",
                    (n, c),
                    self.shape(p),
                    "gamma and beta must be 1 x C",
                ));
            }
        }
        let train = matches!(mode, BatchNormMode::Train { .. });
        if train && n == 0 {
            return Err(AutodiffError::Invalid {
                op: "batch_norm",
                detail: "batch statistics need at least one row".into(),
            });
        }
        // aux: mean (C), inv_std (C), variance (C), gamma * inv_std (C, forward only)
        let aux = self.aux.len();
        self.aux.resize(aux + 4 * c, 0.0);
        let (xo, _) = self.slot(x);
        let eps = match mode {
            BatchNormMode::Train { eps } => {
                let xs = &self.values[xo..xo + n * c];
                let wide = &mut self.wide;
                wide.clear();
                wide.resize(2 * c, 0.0);
                for row in xs.chunks_exact(c) {
                    for (s, &v) in wide[..c].iter_mut().zip(row) {
                        *s += v as f64;
                    }
                }
                for m in &mut wide[..c] {
                    *m /= n as f64;
                }
                for row in xs.chunks_exact(c) {
                    for j in 0..c {
                        let d = row[j] as f64 - wide[j];
                        wide[c + j] += d * d;
                    }
                }
                for j in 0..c {
                    self.aux[aux + j] = wide[j] as f32;
                    self.aux[aux + 2 * c + j] = (wide[c + j] / n as f64) as f32;
                }
                eps
            }
            BatchNormMode::Eval { mean, var, eps } => {
                if mean.len() != c || var.len() != c {
                    return Err(AutodiffError::Invalid {
                        op: "batch_norm",
                        detail: format!(
                            "{} means and {} variances for {c} columns",
                            mean.len(),
                            var.len()
                        ),
                    });
                }
                self.aux[aux..aux + c].copy_from_slice(mean);
                self.aux[aux + 2 * c..aux + 3 * c].copy_from_slice(var);
                eps
            }
        };
        for j in 0..c {
            let var = self.aux[aux + 2 * c + j];
            self.aux[aux + c + j] = 1.0 / (var + eps).sqrt();
        }
        let ((go, _), (bo, _)) = (self.slot(gamma), self.slot(beta));
        let (v, off) = self.push_overwritten(
            Op::BatchNorm {
                x,
                gamma,
                beta,
                aux,
                train,
            },
            n,
            c,
        );
        let Tape {
            values, aux: saved, ..
        } = self;
        let (before, after) = values.split_at_mut(off);
        // y = (x - mean) * (gamma * inv_std) + beta, one vectorised pass
        let (stats, scale) = saved[aux..aux + 4 * c].split_at_mut(3 * c);
        for ((s, &g), &i) in scale
            .iter_mut()
            .zip(&before[go..go + c])
            .zip(&stats[c..2 * c])
        {
            *s = g * i;
        }
        ops::normalize_rows(
            &before[xo..xo + n * c],
            &stats[..c],
            scale,
            &before[bo..bo + c],
            &mut after[..n * c],
        );
        Ok(v)
    }

    /// The statistics a BatchNorm node normalised with: `(mean, variance)` per column (the
    /// batch's own in training mode). `None` if `v` is not a BatchNorm.
    pub fn batch_stats(&self, v: Var) -> Option<(&[f32], &[f32])> {
        match self.nodes.get(v.0 as usize)?.op {
            Op::BatchNorm { aux, .. } => {
                let c = self.shape(v).1;
                Some((&self.aux[aux..aux + c], &self.aux[aux + 2 * c..aux + 3 * c]))
            }
            _ => None,
        }
    }
}

pub(super) fn backward(
    t: &mut Tape,
    node: Node,
    x: Var,
    gamma: Var,
    beta: Var,
    aux: usize,
    train: bool,
) -> Result<()> {
    let (n, c) = (node.rows, node.cols);
    let (sx, sg, sb) = (t.slot(x), t.slot(gamma), t.slot(beta));
    let (need_x, need_g, need_b) = (t.needs_grad(x), t.needs_grad(gamma), t.needs_grad(beta));
    // The input's slot is written as `0 + dx` when nothing wrote it yet (the bits of `+=`
    // into zero, without zeroing it first); gamma's and beta's are added into.
    let fresh_x = need_x && t.take_fresh_grad(x);
    if need_g {
        t.ready_grad(gamma);
    }
    if need_b {
        t.ready_grad(beta);
    }
    let mut wide = std::mem::take(&mut t.wide);
    wide.clear();
    wide.resize(2 * c, 0.0);
    // f32 scratch: per-column partial sums of a block of rows, then the backward's
    // per-column coefficients.
    let mut narrow = std::mem::take(&mut t.narrow);
    narrow.clear();
    narrow.resize(5 * c, 0.0);
    let aux_v = std::mem::take(&mut t.aux);
    let (mu, inv) = (&aux_v[aux..aux + c], &aux_v[aux + c..aux + 2 * c]);
    {
        let (values, before, gy) = parts(t, &node);
        let xv = &values[sx.0..sx.0 + sx.1];
        let gamma_v = &values[sg.0..sg.0 + c];
        let (part, coef) = narrow.split_at_mut(2 * c);
        let (part_dy, part_dyx) = part.split_at_mut(c);
        // sum_n dy and sum_n dy xhat, per column: f32 sums over blocks of rows (the inner
        // loop runs along a row and vectorises), each block's sum added in f64, so the
        // error does not grow with the batch.
        const BLOCK: usize = 64;
        let rows = gy.chunks_exact(c.max(1)).zip(xv.chunks_exact(c.max(1)));
        let mut in_block = 0;
        for (dr, xr) in rows {
            let cols = dr.iter().zip(xr).zip(mu).zip(inv);
            for ((((&d, &x), &m), &i), (sd, sdx)) in
                cols.zip(part_dy.iter_mut().zip(&mut *part_dyx))
            {
                *sd += d;
                *sdx += d * ((x - m) * i);
            }
            in_block += 1;
            if in_block == BLOCK {
                flush(&mut wide, part_dy, part_dyx);
                in_block = 0;
            }
        }
        flush(&mut wide, part_dy, part_dyx);
        if need_b {
            for j in 0..c {
                before[sb.0 + j] += wide[j] as f32;
            }
        }
        if need_g {
            for j in 0..c {
                before[sg.0 + j] += wide[c + j] as f32;
            }
        }
        if need_x {
            // train: dx = k / n (n dy - sum dy - xhat sum dy xhat) = k dy - b - e xhat,
            // with k = gamma inv_std, b = k sum dy / n, e = k sum dy xhat / n;
            // frozen statistics: dx = k dy.
            let (k, rest) = coef.split_at_mut(c);
            let (b, e) = rest.split_at_mut(c);
            let nf = n as f32;
            for j in 0..c {
                k[j] = gamma_v[j] * inv[j];
                b[j] = k[j] * wide[j] as f32 / nf;
                e[j] = k[j] * wide[c + j] as f32 / nf;
            }
            let gx = &mut before[sx.0..sx.0 + sx.1];
            let rows = gx
                .chunks_exact_mut(c.max(1))
                .zip(gy.chunks_exact(c.max(1)))
                .zip(xv.chunks_exact(c.max(1)));
            for ((gr, dr), xr) in rows {
                if train {
                    let cols = gr.iter_mut().zip(dr).zip(xr).zip(mu).zip(inv);
                    let cols = cols.zip(k.iter().zip(&*b).zip(&*e));
                    if fresh_x {
                        for (((((g, &d), &x), &m), &i), ((&k, &b), &e)) in cols {
                            *g = 0.0 + (k * d - b - e * ((x - m) * i));
                        }
                    } else {
                        for (((((g, &d), &x), &m), &i), ((&k, &b), &e)) in cols {
                            *g += k * d - b - e * ((x - m) * i);
                        }
                    }
                } else if fresh_x {
                    for ((g, &d), &k) in gr.iter_mut().zip(dr).zip(&*k) {
                        *g = 0.0 + k * d;
                    }
                } else {
                    for ((g, &d), &k) in gr.iter_mut().zip(dr).zip(&*k) {
                        *g += k * d;
                    }
                }
            }
        }
    }
    t.narrow = narrow;
    t.aux = aux_v;
    t.wide = wide;
    Ok(())
}

/// Adds a block's f32 column sums into the f64 totals and clears them.
fn flush(wide: &mut [f64], part_dy: &mut [f32], part_dyx: &mut [f32]) {
    let c = part_dy.len();
    for j in 0..c {
        wide[j] += part_dy[j] as f64;
        wide[c + j] += part_dyx[j] as f64;
    }
    part_dy.fill(0.0);
    part_dyx.fill(0.0);
}
