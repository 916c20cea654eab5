//! Row-wise softmax (the gates of mixture-of-experts models) and its derivative.
//!
//! Forward, per row: `y_j = e^(x_j - m) / sum_k e^(x_k - m)` with `m = max_k x_k`, so no
//! exponent is positive and nothing overflows. Backward: with `s = sum_k dy_k y_k`,
//! `dx_j = y_j (dy_j - s)`, the product of the softmax Jacobian `diag(y) - y y^T` with `dy`.

use super::math::exp;
use super::{dot8, sum8};

fn check(op: &str, len: usize, other: usize, cols: usize) {
    assert_eq!(len, other, "{op}: slice lengths differ ({len} vs {other})");
    assert!(
        len == 0 || (cols > 0 && len.is_multiple_of(cols)),
        "{op}: {len} values for rows of {cols}"
    );
}

multiversion! {
    /// Softmax of each row of the row-major `rows x cols` matrix `x` into `y`.
    ///
    /// # Panics
    /// If the lengths differ or are not a multiple of `cols`.
    pub fn softmax_rows / softmax_rows_with(x: &[f32], cols: usize, y: &mut [f32]) {
        check("softmax_rows", x.len(), y.len(), cols);
        if x.is_empty() {
            return;
        }
        for (xr, yr) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
            let m = xr.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = exp(x - m);
            }
            let inv = 1.0 / sum8(yr);
            for y in yr.iter_mut() {
                *y *= inv;
            }
        }
    }
}

multiversion! {
    /// Softmax derivative from its output: `dx_j = y_j (dy_j - sum_k dy_k y_k)` per row.
    ///
    /// # Panics
    /// If the lengths differ or are not a multiple of `cols`.
    pub fn softmax_rows_backward / softmax_rows_backward_with(y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32]) {
        check("softmax_rows_backward", y.len(), dy.len(), cols);
        check("softmax_rows_backward", y.len(), dx.len(), cols);
        if y.is_empty() {
            return;
        }
        for ((yr, dyr), dxr) in y.chunks_exact(cols).zip(dy.chunks_exact(cols)).zip(dx.chunks_exact_mut(cols)) {
            let s = dot8(yr, dyr);
            for ((dx, &dy), &y) in dxr.iter_mut().zip(dyr).zip(yr) {
                *dx = y * (dy - s);
            }
        }
    }
}
