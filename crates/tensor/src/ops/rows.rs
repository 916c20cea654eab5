//! Row-broadcast and column reductions over row-major `rows x C` matrices stored as slices:
//! adding a bias to every row (a linear layer's forward) and summing columns (its bias
//! gradient).

/// Adds, for every row `r`, `add_row(r, c0, partial)` into `partial` (columns `c0..`), in
/// blocks of 128 rows whose partial sums are then added to `out`: the rounding error grows
/// with `rows / 128 + 128` instead of `rows`, and no memory is allocated.
#[inline(always)]
pub(crate) fn sum_rows_blocked(
    rows: usize,
    cols: usize,
    out: &mut [f32],
    mut add_row: impl FnMut(usize, usize, &mut [f32]),
) {
    const COLS: usize = 256;
    const ROWS: usize = 128;
    let mut partial = [0.0f32; COLS];
    for c0 in (0..cols).step_by(COLS) {
        let w = COLS.min(cols - c0);
        for r0 in (0..rows).step_by(ROWS) {
            let part = &mut partial[..w];
            part.fill(0.0);
            for r in r0..ROWS.min(rows - r0) + r0 {
                add_row(r, c0, part);
            }
            for (o, &p) in out[c0..c0 + w].iter_mut().zip(part.iter()) {
                *o += p;
            }
        }
    }
}

multiversion! {
    /// Adds `bias` to every row of the row-major matrix `y` (`y.len()` a multiple of
    /// `bias.len()`).
    ///
    /// # Panics
    /// If `bias` is empty while `y` is not, or `y.len()` is not a multiple of `bias.len()`.
    pub fn add_bias_rows / add_bias_rows_with(y: &mut [f32], bias: &[f32]) {
        if y.is_empty() {
            return;
        }
        assert!(!bias.is_empty() && y.len().is_multiple_of(bias.len()), "add_bias_rows: {} values for {} columns", y.len(), bias.len());
        for row in y.chunks_exact_mut(bias.len()) {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

multiversion! {
    /// Column sums accumulated into `out`: `out[c] += sum over rows of x[r, c]`, with
    /// `x` row-major and `out.len()` columns.
    ///
    /// # Panics
    /// If `out` is empty while `x` is not, or `x.len()` is not a multiple of `out.len()`.
    pub fn add_col_sums / add_col_sums_with(x: &[f32], out: &mut [f32]) {
        if x.is_empty() {
            return;
        }
        let c = out.len();
        assert!(c > 0 && x.len().is_multiple_of(c), "add_col_sums: {} values for {} columns", x.len(), c);
        sum_rows_blocked(x.len() / c, c, out, |r, c0, part| {
            let (off, w) = (r * c + c0, part.len());
            for (p, &v) in part.iter_mut().zip(&x[off..off + w]) {
                *p += v;
            }
        });
    }
}

multiversion! {
    /// Per-column affine map of a row-major matrix, BatchNorm's forward:
    /// `y[r, c] = (x[r, c] - mean[c]) * scale[c] + shift[c]` (with `scale = gamma / std`,
    /// `shift = beta`). Subtracting the mean first keeps the digits of values close to it.
    ///
    /// # Panics
    /// If the per-column slices differ in length, `x` and `y` differ in length, or `x.len()`
    /// is not a multiple of the column count.
    pub fn normalize_rows / normalize_rows_with(x: &[f32], mean: &[f32], scale: &[f32], shift: &[f32], y: &mut [f32]) {
        let c = mean.len();
        assert!(scale.len() == c && shift.len() == c, "normalize_rows: {c} means, {} scales, {} shifts", scale.len(), shift.len());
        assert_eq!(x.len(), y.len(), "normalize_rows: input and output lengths differ");
        if x.is_empty() {
            return;
        }
        assert!(c > 0 && x.len().is_multiple_of(c), "normalize_rows: {} values for {c} columns", x.len());
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for ((((y, &x), &m), &s), &t) in yr.iter_mut().zip(xr).zip(mean).zip(scale).zip(shift) {
                *y = (x - m) * s + t;
            }
        }
    }
}
