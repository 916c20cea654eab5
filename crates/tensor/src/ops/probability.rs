//! The logit of a product of two probabilities: `z = logit(sigmoid(a) sigmoid(b))`, and
//! its derivatives, in f64 inside (scalar: used where a model multiplies two probabilities,
//! ESMM's `p(click) p(convert | click)`, on the autodiff tape and in the serving plan alike).
//!
//! With `L = ln(sigmoid(a) sigmoid(b)) = -softplus(-a) - softplus(-b)` (always `< 0`):
//! `z = L - ln(1 - e^L)`, evaluated as `L - ln(-expm1(L))` so that neither a tiny nor a
//! near-one product loses its digits. Gradient: `dL/da = sigmoid(-a)` and
//! `dz/dL = 1 / (1 - e^L)`, so `dz/da = (1 - sigmoid(a)) / (1 - sigmoid(a) sigmoid(b))`.
//! Because the product never exceeds either factor, `z <= min(a, b)`; the value is clamped
//! to that bound so that rounding can never make `sigmoid(z)` exceed `sigmoid(a)`.

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `L = ln(sigmoid(a) sigmoid(b))` and `1 - e^L` (the product's complement, kept away from
/// zero: it is 0 in f64 only when both logits exceed ~745).
fn log_product(a: f32, b: f32) -> (f64, f64) {
    let l = -softplus(-(a as f64)) - softplus(-(b as f64));
    (l, (-l.exp_m1()).max(f64::MIN_POSITIVE))
}

/// `logit(sigmoid(a) sigmoid(b))`, never above `min(a, b)`; NaN in, NaN out.
pub fn product_logit(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        return f32::NAN;
    }
    let (l, rest) = log_product(a, b);
    ((l - rest.ln()) as f32).min(a).min(b)
}

/// `(dz/da, dz/db) = (sigmoid(-a), sigmoid(-b)) / (1 - sigmoid(a) sigmoid(b))`, with both
/// complements computed directly (never as `1 - p`, which rounds to 0 for large logits).
pub fn product_logit_derivatives(a: f32, b: f32) -> (f64, f64) {
    let (_, rest) = log_product(a, b);
    (sigmoid(-(a as f64)) / rest, sigmoid(-(b as f64)) / rest)
}
