//! After a warm-up call, quantizing a request's rows and the int8 GEMM allocate nothing:
//! the workspace keeps its capacity. Checked with a counting global allocator (its own test
//! binary, so that no other test allocates while it counts).

use tensor::{Matrix, PackedQ8, QuantRows, Tier, gemm_q8};

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

#[test]
fn warm_quantize_and_gemm_q8_do_not_allocate() {
    let w = Matrix::from_fn(288, 256, |i, j| ((i * 7 + j) % 13) as f32 - 6.0);
    let x = Matrix::from_fn(500, 288, |i, j| ((i + 3 * j) % 11) as f32 * 0.1);
    let mut c = Matrix::zeros(500, 256);
    for tier in Tier::supported() {
        let packed = PackedQ8::new(tier, w.view()).unwrap();
        let mut q = QuantRows::new();
        let start = testkit::allocations();
        q.quantize(x.view()).unwrap();
        gemm_q8(&q, &packed, c.view_mut()).unwrap();
        let before = testkit::allocations();
        assert!(before > start, "the warm-up grows the workspace");
        for rows in [500, 48, 1, 0, 500] {
            q.quantize(x.view().sub(0, 0, rows, 288)).unwrap();
            gemm_q8(&q, &packed, c.view_mut().sub(0, 0, rows, 256)).unwrap();
        }
        assert_eq!(
            testkit::allocations() - before,
            0,
            "{tier}: allocations after warm-up"
        );
    }
}
