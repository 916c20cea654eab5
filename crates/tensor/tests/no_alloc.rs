//! After a warm-up call, GEMM (any path) and the element-wise kernels allocate nothing:
//! the scratch memory is reused. Checked with a counting global allocator.

use tensor::{Matrix, gemm, ops};

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

#[test]
fn steady_state_kernels_do_not_allocate() {
    // A tower step's products: forward, weight gradient, input gradient, logit layer.
    let x = Matrix::from_fn(256, 608, |i, j| ((i + j) % 7) as f32);
    let w = Matrix::from_fn(608, 128, |i, j| ((i * j) % 5) as f32);
    let w3 = Matrix::from_fn(128, 1, |i, _| i as f32);
    let mut h = Matrix::zeros(256, 128);
    let mut dw = Matrix::zeros(608, 128);
    let mut dx = Matrix::zeros(256, 608);
    let mut logit = Matrix::zeros(256, 1);
    let mut y = vec![0.0f32; 256 * 128];
    let bias = vec![0.5f32; 128];
    let mut db = vec![0.0f32; 128];
    let mut dh = vec![0.0f32; 256 * 128];
    let mut step = || {
        gemm(1.0, x.view(), w.view(), 0.0, h.view_mut()).unwrap();
        gemm(1.0, x.view().t(), h.view(), 0.0, dw.view_mut()).unwrap();
        gemm(1.0, h.view(), w.view().t(), 0.0, dx.view_mut()).unwrap();
        gemm(1.0, h.view(), w3.view(), 0.0, logit.view_mut()).unwrap();
        ops::add_bias_rows(h.as_mut_slice(), &bias);
        ops::sigmoid(h.as_slice(), &mut y);
        ops::prelu(h.as_slice(), &bias, &mut y);
        ops::prelu_backward_add(h.as_slice(), &bias, &y, &mut dh, &mut db);
        ops::add_col_sums(&y, &mut db);
    };
    let start = testkit::allocations();
    step();
    let before = testkit::allocations();
    assert!(
        before > start,
        "the warm-up grows the scratch, so the counter must see it"
    );
    for _ in 0..5 {
        step();
    }
    assert_eq!(
        testkit::allocations() - before,
        0,
        "allocations after warm-up"
    );
}
