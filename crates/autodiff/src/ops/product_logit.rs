//! The logit of a product of two probabilities: `z = logit(sigmoid(a) sigmoid(b))`.
//!
//! ESMM predicts `p(click and convert) = p(click) p(convert | click)` from two logits `a`
//! and `b`; expressing the product as a logit lets it go through the same
//! cross-entropy-with-logits loss and the same serving code as every other head.
//!
//! With `L = ln(sigmoid(a) sigmoid(b)) = -softplus(-a) - softplus(-b)` (always `< 0`):
//! `z = L - ln(1 - e^L)`, evaluated as `L - ln(-expm1(L))` in f64 so that neither a tiny
//! nor a near-one product loses its digits.
//!
//! Gradient: `dL/da = sigmoid(-a)` and `dz/dL = 1 / (1 - e^L)`, so
//! `dz/da = (1 - sigmoid(a)) / (1 - sigmoid(a) sigmoid(b))`, and the same for `b`.
//!
//! The scalar function and its derivatives live in `tensor::ops::product_logit`.
//! Because the product never exceeds either factor, `z <= min(a, b)`; the value is clamped
//! to that bound so that rounding can never make `sigmoid(z)` exceed `sigmoid(a)`.

use super::{Op, parts};
use crate::error::{Result, shape_err};
use crate::tape::{Node, Tape, Var};

use tensor::ops::{product_logit as forward, product_logit_derivatives as derivatives};

impl Tape {
    /// Element-wise `logit(sigmoid(a) sigmoid(b))` of two logits of the same shape.
    pub fn product_logit(&mut self, a: Var, b: Var) -> Result<Var> {
        self.check("product_logit", a)?;
        self.check("product_logit", b)?;
        let ((n, c), sb) = (self.shape(a), self.shape(b));
        if sb != (n, c) {
            return Err(shape_err(
                "product_logit",
                (n, c),
                sb,
                "both logits need the same shape",
            ));
        }
        let ((ao, _), (bo, _)) = (self.slot(a), self.slot(b));
        let (v, off) = self.push(Op::ProductLogit { a, b }, n, c);
        let (before, out) = self.split_values(off, n * c);
        for (i, z) in out.iter_mut().enumerate() {
            *z = forward(before[ao + i], before[bo + i]);
        }
        Ok(v)
    }
}

pub(super) fn backward(t: &mut Tape, node: Node, a: Var, b: Var) -> Result<()> {
    let (sa, sb) = (t.slot(a), t.slot(b));
    let (need_a, need_b) = (t.needs_grad(a), t.needs_grad(b));
    let (values, before, gy) = parts(t, &node);
    for (i, &d) in gy.iter().enumerate() {
        let (da, db) = derivatives(values[sa.0 + i], values[sb.0 + i]);
        if need_a {
            before[sa.0 + i] += (d as f64 * da) as f32;
        }
        if need_b {
            before[sb.0 + i] += (d as f64 * db) as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{derivatives, forward};

    #[test]
    fn derivatives_stay_exact_for_large_logits() {
        // Equal logits: dz/da = sigmoid(-a) / (1 - sigmoid(a)^2) = 1 / (1 + sigmoid(a)) -> 1/2.
        for a in [10.0f32, 37.0, 60.0, 200.0] {
            let (da, db) = derivatives(a, a);
            assert!(
                (da - 0.5).abs() < 1e-3 && (db - 0.5).abs() < 1e-3,
                "{a}: {da} {db}"
            );
        }
        // One large, one moderate logit: z follows b, so dz/db -> 1 and dz/da -> 0.
        let (da, db) = derivatives(80.0, 1.0);
        assert!(da < 1e-20 && (db - 1.0).abs() < 1e-12, "{da} {db}");
        // Central difference in f64 at a moderate point.
        let z = |a: f64, b: f64| {
            let (pa, pb) = (1.0 / (1.0 + (-a).exp()), 1.0 / (1.0 + (-b).exp()));
            (pa * pb / (1.0 - pa * pb)).ln()
        };
        let (da, db) = derivatives(1.5, -0.5);
        let h = 1e-6;
        assert!((da - (z(1.5 + h, -0.5) - z(1.5 - h, -0.5)) / (2.0 * h)).abs() < 1e-6);
        assert!((db - (z(1.5, -0.5 + h) - z(1.5, -0.5 - h)) / (2.0 * h)).abs() < 1e-6);
        assert!(forward(f32::NAN, 1.0).is_nan() && forward(1.0, f32::NAN).is_nan());
    }

    #[test]
    fn matches_the_product_and_stays_below_both_factors() {
        let sig = |x: f32| 1.0 / (1.0 + (-x as f64).exp());
        for &(a, b) in &[
            (0.0f32, 0.0f32),
            (2.0, -3.0),
            (-20.0, -20.0),
            (30.0, 30.0),
            (15.0, -0.5),
            (800.0, 800.0),
        ] {
            let z = forward(a, b);
            assert!(z <= a && z <= b, "{a} {b} -> {z}");
            let want = sig(a) * sig(b);
            let got = sig(z);
            assert!(
                (got - want).abs() <= 1e-6 * want.max(1e-30) + 1e-12,
                "{a} {b}: {got} vs {want}"
            );
        }
    }
}
