//! Activations and their derivatives: ReLU, PReLU, sigmoid, log-sigmoid, softplus, tanh.
//!
//! Shapes: `x`, `y`, `dy`, `dx` are the same length; PReLU's `x` is `rows x C` row-major
//! with one slope per column (`slopes.len() == C`). Backward functions take the upstream
//! gradient `dy` and write `dx = dy * f'(.)`, from the input `x` or, where cheaper, from the
//! forward output `y` (sigmoid: `y (1 - y)`, tanh: `1 - y^2`).

use super::math::{exp, ln_1p};
use super::rows::sum_rows_blocked;

fn check(op: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{op}: slice lengths differ ({a} vs {b})");
}

multiversion! {
    /// ReLU: `y = max(x, 0)`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn relu / relu_with(x: &[f32], y: &mut [f32]) {
        check("relu", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            *y = if x > 0.0 { x } else { 0.0 };
        }
    }
}

multiversion! {
    /// ReLU derivative: `dx = dy` where `x > 0`, else `0`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn relu_backward / relu_backward_with(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        check("relu_backward", x.len(), dy.len());
        check("relu_backward", x.len(), dx.len());
        for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
            *dx = if x > 0.0 { dy } else { 0.0 };
        }
    }
}

multiversion! {
    /// PReLU with one slope per column: `y = x` where `x > 0`, else `slope[c] * x`.
    ///
    /// # Panics
    /// If `slopes` is empty while `x` is not, `x.len()` is not a multiple of
    /// `slopes.len()`, or `y` differs in length from `x`.
    pub fn prelu / prelu_with(x: &[f32], slopes: &[f32], y: &mut [f32]) {
        check("prelu", x.len(), y.len());
        if x.is_empty() {
            return;
        }
        assert!(!slopes.is_empty() && x.len().is_multiple_of(slopes.len()), "prelu: {} values for {} slopes", x.len(), slopes.len());
        let c = slopes.len();
        for (xr, yr) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)) {
            for ((y, &x), &a) in yr.iter_mut().zip(xr).zip(slopes) {
                *y = if x > 0.0 { x } else { a * x };
            }
        }
    }
}

multiversion! {
    /// PReLU derivative, accumulated: `dx += dy * (x > 0 ? 1 : slope[c])` and
    /// `dslopes[c] += sum over rows of dy * x` where `x <= 0` (summed in blocks of rows so
    /// the error does not grow with the batch). Accumulating, because in a graph a value may
    /// receive gradient from several consumers; zero `dx` first for the plain derivative.
    ///
    /// # Panics
    /// On the same length mismatches as [`prelu`], or if `dslopes.len() != slopes.len()`.
    pub fn prelu_backward_add / prelu_backward_add_with(
        x: &[f32],
        slopes: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dslopes: &mut [f32],
    ) {
        check("prelu_backward_add", x.len(), dy.len());
        check("prelu_backward_add", x.len(), dx.len());
        check("prelu_backward_add", slopes.len(), dslopes.len());
        if x.is_empty() {
            return;
        }
        assert!(!slopes.is_empty() && x.len().is_multiple_of(slopes.len()), "prelu_backward_add: {} values for {} slopes", x.len(), slopes.len());
        let c = slopes.len();
        for ((xr, dyr), dxr) in x.chunks_exact(c).zip(dy.chunks_exact(c)).zip(dx.chunks_exact_mut(c)) {
            for (((dx, &dy), &x), &a) in dxr.iter_mut().zip(dyr).zip(xr).zip(slopes) {
                *dx += if x > 0.0 { dy } else { a * dy };
            }
        }
        sum_rows_blocked(x.len() / c, c, dslopes, |r, c0, part| {
            let (off, w) = (r * c + c0, part.len());
            let (xr, dyr) = (&x[off..off + w], &dy[off..off + w]);
            for ((p, &x), &dy) in part.iter_mut().zip(xr).zip(dyr) {
                *p += if x > 0.0 { 0.0 } else { dy * x };
            }
        });
    }
}

multiversion! {
    /// One Adam update of a slice, in place (TensorFlow's form, bias correction folded into
    /// `lr_t`): `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
    /// `p -= lr_t m / (sqrt(v) + eps)`.
    ///
    /// # Panics
    /// If the four slices differ in length.
    pub fn adam_update / adam_update_with(
        lr_t: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        p: &mut [f32],
        m: &mut [f32],
        v: &mut [f32],
        g: &[f32],
    ) {
        check("adam_update", p.len(), m.len());
        check("adam_update", p.len(), v.len());
        check("adam_update", p.len(), g.len());
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *p -= lr_t * *m / (v.sqrt() + eps);
        }
    }
}

multiversion! {
    /// Inference-time hidden layer epilogue, in place: `x = scale[c] * prelu(x) + shift[c]`
    /// per column `c` (PReLU, then a BatchNorm reduced to a per-unit scale and shift).
    ///
    /// # Panics
    /// If the three per-column slices differ in length, or `x.len()` is not a multiple of it.
    pub fn prelu_scale_shift / prelu_scale_shift_with(x: &mut [f32], slopes: &[f32], scale: &[f32], shift: &[f32]) {
        check("prelu_scale_shift", slopes.len(), scale.len());
        check("prelu_scale_shift", slopes.len(), shift.len());
        if x.is_empty() {
            return;
        }
        assert!(!slopes.is_empty() && x.len().is_multiple_of(slopes.len()), "prelu_scale_shift: {} values for {} columns", x.len(), slopes.len());
        for row in x.chunks_exact_mut(slopes.len()) {
            for (((v, &a), &s), &t) in row.iter_mut().zip(slopes).zip(scale).zip(shift) {
                let p = if *v > 0.0 { *v } else { a * *v };
                *v = s * p + t;
            }
        }
    }
}

multiversion! {
    /// Logistic sigmoid `y = 1 / (1 + e^-x)`, in the stable form that never exponentiates a
    /// positive number: with `z = e^-|x|`, `y = 1 / (1 + z)` for `x >= 0` and `z / (1 + z)`
    /// otherwise. Always in `[0, 1]`; exactly `1` at `x = 100`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn sigmoid / sigmoid_with(x: &[f32], y: &mut [f32]) {
        check("sigmoid", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            let z = exp(-x.abs());
            let s = 1.0 / (1.0 + z);
            *y = if x >= 0.0 { s } else { z * s };
        }
    }
}

multiversion! {
    /// Sigmoid derivative from its output: `dx = dy * y * (1 - y)`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn sigmoid_backward / sigmoid_backward_with(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        check("sigmoid_backward", y.len(), dy.len());
        check("sigmoid_backward", y.len(), dx.len());
        for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
            *dx = dy * (y * (1.0 - y));
        }
    }
}

multiversion! {
    /// Log-sigmoid `y = ln sigmoid(x) = min(x, 0) - ln(1 + e^-|x|)`: finite for every finite
    /// `x` (exactly `-100` at `x = -100`). Its derivative is `sigmoid(-x)`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn log_sigmoid / log_sigmoid_with(x: &[f32], y: &mut [f32]) {
        check("log_sigmoid", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x.min(0.0) - ln_1p(exp(-x.abs()));
        }
    }
}

multiversion! {
    /// Softplus `y = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|)`, the stable form. Its
    /// derivative is `sigmoid(x)`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn softplus / softplus_with(x: &[f32], y: &mut [f32]) {
        check("softplus", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x.max(0.0) + ln_1p(exp(-x.abs()));
        }
    }
}

multiversion! {
    /// Hyperbolic tangent. For `|x| >= 1/8`, `tanh |x| = (1 - e) / (1 + e)` with
    /// `e = e^(-2|x|)` (no overflow); below, its Taylor series to `x^9`, which avoids the
    /// cancellation in `1 - e`. The sign is copied from `x`; always in `[-1, 1]`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn tanh / tanh_with(x: &[f32], y: &mut [f32]) {
        check("tanh", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            let a = x.abs();
            let e = exp(-2.0 * a);
            let big = (1.0 - e) / (1.0 + e);
            let a2 = a * a;
            let small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))));
            let t = if a < 0.125 { small } else { big };
            *y = t.copysign(x);
        }
    }
}

multiversion! {
    /// Tanh derivative from its output: `dx = dy * (1 - y^2)`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn tanh_backward / tanh_backward_with(y: &[f32], dy: &[f32], dx: &mut [f32]) {
        check("tanh_backward", y.len(), dy.len());
        check("tanh_backward", y.len(), dx.len());
        for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
            *dx = dy * (1.0 - y * y);
        }
    }
}
