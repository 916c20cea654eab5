//! Vector updates: `y += alpha x`, `x *= alpha`, element-wise sum and product.

fn check(op: &str, a: usize, b: usize) {
    assert_eq!(a, b, "{op}: slice lengths differ ({a} vs {b})");
}

multiversion! {
    /// `y += alpha * x`.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn axpy / axpy_with(alpha: f32, x: &[f32], y: &mut [f32]) {
        check("axpy", x.len(), y.len());
        for (y, &x) in y.iter_mut().zip(x) {
            *y += alpha * x;
        }
    }
}

multiversion! {
    /// `x *= alpha`.
    pub fn scale / scale_with(alpha: f32, x: &mut [f32]) {
        for v in x.iter_mut() {
            *v *= alpha;
        }
    }
}

multiversion! {
    /// `out = a + b`, element-wise.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn add / add_with(a: &[f32], b: &[f32], out: &mut [f32]) {
        check("add", a.len(), b.len());
        check("add", a.len(), out.len());
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    }
}

multiversion! {
    /// `out = a * b`, element-wise.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn mul / mul_with(a: &[f32], b: &[f32], out: &mut [f32]) {
        check("mul", a.len(), b.len());
        check("mul", a.len(), out.len());
        for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
            *o = a * b;
        }
    }
}
