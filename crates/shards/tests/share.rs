//! Shares of global batches (several processes training one model): the share's worker
//! views are exactly the views a single process with every worker would take, every process
//! walks the same number of batches, and the shares of a batch cover it once.

use shards::synth::{SynthConfig, generate};
use shards::{Batch, BatchView, Dataset, Share};

fn dataset(name: &str) -> Dataset {
    let dir = std::env::temp_dir().join(format!("shards-share-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 2_503 rows in shards of 700: batches and windows cross shard boundaries, and the last
    // batch is short.
    generate(
        &SynthConfig {
            rows: 2_503,
            rows_per_shard: 700,
            max_vocab: 300,
            ..SynthConfig::default()
        },
        &dir,
    )
    .unwrap();
    Dataset::open(&dir).unwrap()
}

/// The rows of a view as comparable values (bags as their ids per row).
fn rows_of(v: &BatchView<'_>, bags: usize) -> Vec<String> {
    (0..v.rows())
        .map(|r| {
            let t = v.labels().len() / v.rows();
            let s = v.single().len() / v.rows();
            let d = v.dense().len() / v.rows();
            let bag_ids: Vec<Vec<u32>> = (0..bags)
                .map(|k| {
                    let (o, ids) = v.bag(k);
                    let base = o[0];
                    ids[(o[r] - base) as usize..(o[r + 1] - base) as usize].to_vec()
                })
                .collect();
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                &v.labels()[r * t..(r + 1) * t],
                &v.single()[r * s..(r + 1) * s],
                &v.dense()[r * d..(r + 1) * d],
                bag_ids,
                v.group().get(r),
            )
        })
        .collect()
}

#[test]
fn shares_take_the_views_one_process_with_every_worker_takes() {
    let ds = dataset("views");
    let bags = ds.schema().multi.len();
    for (batch_size, ranks, threads, window) in [
        (512, 2, 1, 1 << 16),
        (512, 2, 2, 300),
        (97, 3, 2, 1 << 16),
        (1000, 4, 1, 128),
        (3, 2, 3, 1 << 16),
    ] {
        let parts = ranks * threads;
        let seed = Some(7 + batch_size as u64);
        let mut whole = ds.batches(batch_size, seed).with_window(window);
        let mut shares: Vec<_> = (0..ranks)
            .map(|r| {
                ds.batches(batch_size, seed)
                    .with_window(window)
                    .with_share(Share::of_rank(r, ranks, threads))
            })
            .collect();
        let (mut full, mut part) = (ds.new_batch(), Batch::default());
        let mut steps = 0;
        loop {
            let more = whole.next_into(&mut full);
            let mut covered = Vec::new();
            for (r, it) in shares.iter_mut().enumerate() {
                assert_eq!(it.next_into(&mut part), more, "rank {r} step {steps}");
                if !more {
                    continue;
                }
                assert_eq!(part.global_rows(), full.rows);
                let share = Share::of_rank(r, ranks, threads);
                assert_eq!(part.rows, share.rows(full.rows).len());
                let global: Vec<_> = full.split(parts).map(|v| (v.start(), v)).collect();
                for (k, v) in part.split(threads).enumerate() {
                    let (_, g) = global
                        .iter()
                        .find(|(s, _)| *s == share.rows(full.rows).start + v.start())
                        .expect("a view of the whole batch starts there");
                    assert_eq!(v.rows(), g.rows(), "rank {r} worker {k}");
                    assert_eq!(rows_of(&v, bags), rows_of(g, bags), "rank {r} worker {k}");
                }
                covered.extend(rows_of(&part.view(), bags));
            }
            if !more {
                break;
            }
            assert_eq!(
                covered,
                rows_of(&full.view(), bags),
                "the shares cover the batch"
            );
            steps += 1;
        }
        assert_eq!(steps, ds.rows().div_ceil(batch_size));
    }
}

#[test]
fn a_share_of_one_part_is_the_whole_batch() {
    let ds = dataset("one");
    let mut a = ds.batches(256, Some(3));
    let mut b = ds.batches(256, Some(3)).with_share(Share::of_rank(0, 1, 1));
    let (mut x, mut y) = (ds.new_batch(), ds.new_batch());
    while a.next_into(&mut x) {
        assert!(b.next_into(&mut y));
        assert_eq!(x, y);
        assert_eq!(y.global_rows(), y.rows);
    }
    assert!(!b.next_into(&mut y));
}

#[test]
fn share_rows_are_the_consecutive_parts() {
    // 10 rows, 2 x 2: parts 0..3 | 3..6 | 6..8 | 8..10.
    assert_eq!(Share::of_rank(0, 2, 2).rows(10), 0..6);
    assert_eq!(Share::of_rank(1, 2, 2).rows(10), 6..10);
    // 1 row, 2 ranks: the second share is empty.
    assert_eq!(Share::of_rank(1, 2, 1).rows(1), 1..1);
    assert_eq!(Share::of_rank(0, 3, 1).rows(0), 0..0);
}
