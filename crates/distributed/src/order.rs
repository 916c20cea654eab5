//! The arithmetic of the cross-process reduction, apart from the transport: which chunk of
//! the dense gradient each rank sums, the sum in rank order, and how the sparse rows of
//! every table travel in one buffer. [`crate::MpiReduce`] moves the bytes; the tests here
//! check, without MPI, that the order of every addition is the in-process one.
//!
//! ```text
//! dense, n floats, 3 ranks: chunks 0..c1 | c1..c2 | c2..n (Batch::split's cut)
//!   all-to-all: rank c receives chunk c of ranks 0, 1, 2  -> [g0_c | g1_c | g2_c]
//!   fold:       s_c = (g0_c + g1_c) + g2_c                 (axpy, as Grads::add)
//!   all-gather: every rank receives s_0 | s_1 | s_2
//! sparse, per rank: ids  [table 0 ids | table 1 ids | ...]
//!                   rows [table 0 rows | table 1 rows | ...], counts [n_0, n_1, ...]
//!   all-gather both; table t of the result = rank 0's table t ++ rank 1's table t ++ ...
//! ```

use std::ops::Range;

use autodiff::SparseRows;

/// The chunk of an `n`-float gradient that rank `c` of `ranks` sums.
pub fn chunk(n: usize, c: usize, ranks: usize) -> Range<usize> {
    shards::part_range(n, c, ranks)
}

/// `received` holds `ranks` copies of one chunk, rank 0's first; adds them in rank order
/// into the first (the sum the in-process reduction computes, addition for addition).
pub fn fold_in_rank_order(received: &mut [f32], ranks: usize) {
    if ranks <= 1 || received.is_empty() {
        return;
    }
    let len = received.len() / ranks;
    let (acc, rest) = received.split_at_mut(len);
    for other in rest.chunks_exact(len) {
        tensor::ops::axpy(1.0, other, acc);
    }
}

/// Appends every table's ids and rows to one buffer each, and each table's row count to
/// `counts` (all three cleared first).
pub fn pack_rows(
    tables: &[SparseRows],
    ids: &mut Vec<u32>,
    rows: &mut Vec<f32>,
    counts: &mut Vec<usize>,
) {
    ids.clear();
    rows.clear();
    counts.clear();
    for t in tables {
        ids.extend_from_slice(&t.ids);
        rows.extend_from_slice(&t.rows);
        counts.push(t.ids.len());
    }
}

/// Rebuilds every table's rows from the packed buffers of every rank, concatenated in rank
/// order: `counts` is `ranks x tables` (rank-major), `ids` and `rows` the ranks' packed
/// buffers one after the other. Table `t` becomes rank 0's rows of `t`, then rank 1's, ...
pub fn unpack_rows(counts: &[usize], ids: &[u32], rows: &[f32], tables: &mut [SparseRows]) {
    let n = tables.len();
    for t in tables.iter_mut() {
        t.clear();
    }
    let (mut id_at, mut row_at) = (0usize, 0usize);
    for rank_counts in counts.chunks_exact(n.max(1)) {
        for (t, &c) in tables.iter_mut().zip(rank_counts) {
            let d = t.dim;
            t.ids.extend_from_slice(&ids[id_at..id_at + c]);
            t.rows.extend_from_slice(&rows[row_at..row_at + c * d]);
            id_at += c;
            row_at += c * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic floats of mixed magnitudes (so that the order of additions shows).
    fn floats(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let m = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                m * 10f32.powi((s % 9) as i32 - 4)
            })
            .collect()
    }

    /// The dense all-reduce simulated rank by rank: chunks exchanged, folded, gathered.
    fn simulated_all_reduce(grads: &[Vec<f32>]) -> Vec<f32> {
        let (ranks, n) = (grads.len(), grads[0].len());
        let mut out = vec![f32::NAN; n];
        for c in 0..ranks {
            let r = chunk(n, c, ranks);
            let mut received: Vec<f32> = grads.iter().flat_map(|g| g[r.clone()].to_vec()).collect();
            fold_in_rank_order(&mut received, ranks);
            out[r.clone()].copy_from_slice(&received[..r.len()]);
        }
        out
    }

    #[test]
    fn dense_sums_are_the_workers_fold_bit_for_bit() {
        for ranks in 1..6 {
            for n in [0, 1, 2, 3, 7, 31, 64, 1000, 4099] {
                let grads: Vec<Vec<f32>> =
                    (0..ranks).map(|q| floats(n, (q * 31 + n) as u64)).collect();
                let mut fold = grads[0].clone();
                for g in &grads[1..] {
                    tensor::ops::axpy(1.0, g, &mut fold);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&simulated_all_reduce(&grads)),
                    bits(&fold),
                    "{ranks} ranks, {n} floats"
                );
            }
        }
    }

    #[test]
    fn chunks_cover_the_gradient_once() {
        for ranks in 1..7 {
            for n in 0..40 {
                let mut next = 0;
                for c in 0..ranks {
                    let r = chunk(n, c, ranks);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn sparse_rows_concatenate_in_rank_order() {
        let dims = [3usize, 1, 2];
        let rank_tables: Vec<Vec<SparseRows>> = (0..3u32)
            .map(|q| {
                dims.iter()
                    .enumerate()
                    .map(|(t, &dim)| {
                        let mut s = SparseRows::default();
                        s.dim = dim;
                        // Rank 1 touches nothing in table 1; ids repeat across ranks.
                        let rows = if q == 1 && t == 1 {
                            0
                        } else {
                            q as usize + t + 1
                        };
                        for k in 0..rows {
                            let row = floats(dim, (q as u64) << 8 | (t as u64) << 4 | k as u64);
                            s.push((k as u32 * 7 + q) % 5, &row);
                        }
                        s
                    })
                    .collect()
            })
            .collect();
        // What the in-process reduction computes: rank 0's lists extended by the others'.
        let mut expected = rank_tables[0].clone();
        for other in &rank_tables[1..] {
            for (a, b) in expected.iter_mut().zip(other) {
                a.extend(b);
            }
        }
        let (mut all_ids, mut all_rows, mut all_counts) = (vec![], vec![], vec![]);
        for tables in &rank_tables {
            let (mut ids, mut rows, mut counts) = (vec![], vec![], vec![]);
            pack_rows(tables, &mut ids, &mut rows, &mut counts);
            all_ids.extend(ids);
            all_rows.extend(rows);
            all_counts.extend(counts);
        }
        let mut got = rank_tables[2].clone();
        unpack_rows(&all_counts, &all_ids, &all_rows, &mut got);
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((&g.ids, &g.rows, g.dim), (&e.ids, &e.rows, e.dim));
        }
    }
}
