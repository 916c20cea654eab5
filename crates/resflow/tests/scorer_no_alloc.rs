//! After warm-up, scoring a request allocates nothing (counting global allocator), for
//! every model kind's compiled plan, in every precision.

use resflow::config::TaskConfig;
use resflow::{Bag, Field, InputLayout, Model, ModelConfig, Pooling, Precision, Request, Scorer};

#[global_allocator]
static GLOBAL: testkit::CountingAllocator = testkit::CountingAllocator;

/// Run as a plain program (`harness = false` in Cargo.toml), so that no harness thread
/// allocates while the counter runs.
fn main() {
    scoring_allocates_nothing_after_warm_up();
    println!("scoring_allocates_nothing_after_warm_up: ok");
}

fn scoring_allocates_nothing_after_warm_up() {
    for kind in resflow::config::ModelKind::NAMES {
        for precision in Precision::ALL {
            check(kind, precision);
        }
    }
}

fn check(kind: &str, precision: Precision) {
    let field = |name: &str, vocab, bag| Field {
        name: name.into(),
        vocab,
        bag,
    };
    let layout = InputLayout {
        fields: vec![
            field("user", 100, None),
            field("item", 500, None),
            field("tags", 50, Some(Pooling::Sum)),
        ],
        dense: 2,
        tasks: vec!["click".into(), "order".into()],
    };
    let config = ModelConfig {
        embedding_dim: 16,
        hidden: vec![32, 16],
        tasks: ["click", "order"]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        request_fields: vec!["user".into()],
        ..ModelConfig::default()
    }
    .with_model(kind)
    .unwrap();
    let scorer =
        Scorer::with_precision(Model::random(config, layout, 3).unwrap(), precision).unwrap();
    let kind = format!("{kind} ({precision})");
    let n = 300;
    let ids: Vec<u32> = (0..n as u32).map(|i| i % 500).collect();
    let offsets: Vec<u64> = (0..=n as u64).map(|i| i * 2).collect();
    let tags: Vec<u32> = (0..2 * n as u32).map(|i| i % 50).collect();
    let bags = [Bag {
        offsets: &offsets,
        ids: &tags,
    }];
    let dense = vec![0.1f32; 2 * n];
    let req = Request {
        candidates: n,
        ids: &ids,
        bags: &bags,
        dense: &dense,
        dense_stride: 2,
        request_ids: &[7],
        request_bags: &[],
    };
    let (mut probs, mut fused) = (vec![0.0; 2 * n], vec![0.0; n]);
    let mut ws = scorer.workspace(n);
    let start = testkit::allocations();
    scorer.score(&mut ws, &req, &mut probs, &mut fused).unwrap();
    let warm = testkit::allocations();
    assert!(
        warm > start,
        "{kind}: the first call grows the GEMM scratch, so the counter must see it"
    );
    for _ in 0..10 {
        scorer.score(&mut ws, &req, &mut probs, &mut fused).unwrap();
    }
    assert_eq!(
        testkit::allocations(),
        warm,
        "{kind}: allocations after warm-up"
    );
    // The workspace carries all its memory: scoring on another thread allocates nothing
    // either (the thread itself is started before counting).
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let before = testkit::allocations();
                scorer.score(&mut ws, &req, &mut probs, &mut fused).unwrap();
                assert_eq!(
                    testkit::allocations(),
                    before,
                    "{kind}: allocations on a new thread"
                );
            })
            .join()
            .unwrap();
    });
    let warm = testkit::allocations();
    assert!(ws.capacity() >= n);
    // Smaller requests reuse the same buffers.
    let small = Request {
        candidates: 10,
        ids: &ids[..10],
        bags: &[Bag {
            offsets: &offsets[..11],
            ids: &tags[..20],
        }],
        ..req
    };
    scorer
        .score(&mut ws, &small, &mut probs, &mut fused)
        .unwrap();
    assert_eq!(testkit::allocations(), warm);
}
