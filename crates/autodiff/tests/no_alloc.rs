//! A training step in steady state allocates nothing: steps 2..10 of a small ResFlow-like
//! model (embeddings, a bag, BatchNorm, linear + PReLU towers with a residual link,
//! weighted BCE, Adam and lazy Adam) are counted by a global allocator.

use autodiff::{
    Adam, AdamConfig, BatchNormMode, BceTarget, Grads, LazyAdam, ParamStore, Pooling, Tape,
};
use tensor::Matrix;

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

/// Run as a plain program (`harness = false` in Cargo.toml), so that no harness thread
/// allocates while the counter runs.
fn main() {
    steady_state_training_steps_do_not_allocate();
    println!("steady_state_training_steps_do_not_allocate: ok");
}

fn steady_state_training_steps_do_not_allocate() {
    let (n, d, h) = (64usize, 8usize, 16usize);
    let mut store = ParamStore::new();
    let user = store.add_table(
        "user",
        Matrix::from_fn(50, d, |i, j| ((i + j) % 7) as f32 * 0.01),
    );
    let tags = store.add_table(
        "tags",
        Matrix::from_fn(30, d, |i, j| ((i * j) % 5) as f32 * 0.01),
    );
    let g_in = store.add("bn_in.gamma", Matrix::from_fn(1, 2 * d, |_, _| 1.0));
    let b_in = store.add("bn_in.beta", Matrix::zeros(1, 2 * d));
    let tower = |s: &mut ParamStore, k: usize| {
        (
            s.add(
                format!("t{k}.w"),
                Matrix::from_fn(2 * d, h, |i, j| ((i + 3 * j) % 11) as f32 * 0.02 - 0.1),
            ),
            s.add(format!("t{k}.b"), Matrix::zeros(1, h)),
            s.add(format!("t{k}.slope"), Matrix::zeros(1, h)),
            s.add(
                format!("t{k}.wz"),
                Matrix::from_fn(h, 1, |i, _| (i % 3) as f32 * 0.1 - 0.1),
            ),
        )
    };
    let towers = [tower(&mut store, 0), tower(&mut store, 1)];
    let ids: Vec<u32> = (0..n as u32).map(|i| i % 50).collect();
    let offsets: Vec<u64> = (0..=n as u64).map(|i| i * 2).collect();
    let bag: Vec<u32> = (0..2 * n as u32).map(|i| (i * 7) % 30).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 3 == 0) as u32 as f32).collect();
    let (zeros, ones) = (vec![0.0f32; 2 * d], vec![1.0f32; 2 * d]);
    let cfg = AdamConfig::default();
    let mut adam = Adam::new(cfg, &store);
    let mut lazy = LazyAdam::new(cfg, &store, true);
    let mut tape = Tape::new();
    let mut grads = Grads::zeros_like(&store);

    let mut step = |store: &mut ParamStore| {
        tape.reset();
        grads.zero();
        let u = tape.embedding(store, user, &ids).unwrap();
        let t = tape
            .embedding_bag(store, tags, &offsets, &bag, Pooling::Sum)
            .unwrap();
        let x = tape.concat(&[u, t]).unwrap();
        let (g, b) = (tape.param(store, g_in), tape.param(store, b_in));
        let x = tape
            .batch_norm(
                x,
                g,
                b,
                BatchNormMode::Eval {
                    mean: &zeros,
                    var: &ones,
                    eps: 1e-3,
                },
            )
            .unwrap();
        let mut prev_h = None;
        let mut prev_z = None;
        let mut total = None;
        for (k, &(w, bias, slope, wz)) in towers.iter().enumerate() {
            let (w, bias, slope, wz) = (
                tape.param(store, w),
                tape.param(store, bias),
                tape.param(store, slope),
                tape.param(store, wz),
            );
            let a = tape.linear(x, w, Some(bias)).unwrap();
            let mut hk = tape.prelu(a, slope).unwrap();
            if let Some(p) = prev_h {
                hk = tape.add(hk, p).unwrap();
            }
            let mut z = tape.linear(hk, wz, None).unwrap();
            if let Some(p) = prev_z {
                z = tape.add(z, p).unwrap();
            }
            let target = BceTarget {
                labels: &labels,
                weights: None,
                pos_weight: 1.0 + k as f32,
                denom: None,
            };
            let l = tape.bce_with_logits(z, target).unwrap();
            total = Some(match total {
                None => l,
                Some(t) => tape.add(t, l).unwrap(),
            });
            prev_h = Some(hk);
            prev_z = Some(z);
        }
        let loss = total.unwrap();
        tape.backward(loss, &mut grads).unwrap();
        adam.step(store, &grads);
        lazy.step(store, &mut grads);
        tape.value(loss)[0]
    };
    // The optimisers update parameters in parallel on rayon. A rayon worker sets up some
    // per-thread state (once) the first time it steals a job, which can happen at any step;
    // a one-thread pool makes that one-time setup happen during the warm-up step.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let first = pool.install(|| step(&mut store));
    let before = testkit::allocations();
    let mut last = first;
    for _ in 2..=10 {
        last = pool.install(|| step(&mut store));
    }
    assert_eq!(
        testkit::allocations() - before,
        0,
        "allocations in steps 2..10"
    );
    assert!(last < first, "the loss should fall: {first} -> {last}");
}
