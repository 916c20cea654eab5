//! Compact storage of row-sharded embedding tables: a process holds only the rows it owns.
//!
//! With `--shard-tables` a process is the owner of the rows [`owner`] gives it, and only the
//! owner's copy of a row is current. Holding every table at full size would then waste
//! `(R-1)/R` of the memory, and of the lazy Adam moments, on rows that are only a cache.
//! Instead each table is kept in two parts:
//!
//! ```text
//! owned    the rows this process owns, in increasing id order     (kept; the optimiser's)
//!          owned_ids[k][i] = id of row i; an id's index: binary search
//! working  the rows the current step's batch reads, owned or not   (rebuilt every step)
//!          work_ids[k][i] = id of row i, increasing; the owned ones are copied from
//!          `owned`, the others fetched from their owners
//! ```
//!
//! The batch is copied with every id replaced by its index in the working table, so the
//! embedding lookup and the gradient scatter of the network run unchanged on the working
//! table (the single-process path never sees this module). The gradient rows come back with
//! working indices; [`CompactTables::to_global`] turns them into ids for the exchange with
//! the owners, and [`CompactTables::to_owned_index`] the rows received into indices of the
//! owned part, on which lazy Adam steps. Both maps preserve the order of the ids, so the
//! additions and updates are the replicated mode's, bit for bit.

use autodiff::{SparseRows, Table};
use model::{ModelError, TableInit};
use shards::Batch;
use tensor::Matrix;

use crate::error::Error;
use crate::reduce::owner;

/// One process's part of row-sharded tables, and the working table of the current step.
#[derive(Debug, Default)]
pub struct CompactTables {
    /// Per table: its rows in the whole model.
    pub full_rows: Vec<usize>,
    /// Per table: the ids this process owns, increasing.
    pub owned_ids: Vec<Vec<u32>>,
    /// Per table: the owned rows, in the order of `owned_ids`.
    pub owned: Vec<Table>,
    /// Per table: the distinct ids the current step reads, increasing (row `i` of the
    /// working table holds id `work_ids[k][i]`).
    pub work_ids: Vec<Vec<u32>>,
    /// The current batch, its ids replaced by indices into the working tables.
    pub batch: Batch,
    /// Per batch field (single-id fields, then bags): its table.
    fields: Vec<usize>,
    rank: usize,
    ranks: usize,
}

fn alloc(rows: usize, cols: usize) -> Result<Matrix, Error> {
    Matrix::try_zeros(rows, cols)
        .map_err(|e| ModelError::Config(format!("embedding rows of {rows} x {cols}: {e}")).into())
}

impl CompactTables {
    /// Moves the rows of `tables` this process owns into compact storage, leaving every
    /// table of `tables` empty (zero rows) until a step fills its working rows.
    pub fn take(
        tables: &mut [Table],
        fields: Vec<usize>,
        (rank, ranks): (usize, usize),
    ) -> Result<Self, Error> {
        let mut c = Self {
            fields,
            rank,
            ranks,
            work_ids: vec![Vec::new(); tables.len()],
            ..Self::default()
        };
        for (k, t) in tables.iter_mut().enumerate() {
            let (rows, d) = t.value.shape();
            let ids: Vec<u32> = (0..rows as u32)
                .filter(|&id| owner(k, id, ranks) == rank)
                .collect();
            let mut value = alloc(ids.len(), d)?;
            for (i, &id) in ids.iter().enumerate() {
                value.row_mut(i).copy_from_slice(t.value.row(id as usize));
            }
            c.full_rows.push(rows);
            c.owned_ids.push(ids);
            c.owned.push(Table {
                name: t.name.clone(),
                value,
            });
            t.value = Matrix::zeros(0, d);
        }
        Ok(c)
    }

    /// The rows this process owns of tables of `rows` rows each, `dim` wide, named
    /// `names`, drawn from `init` ([`TableInit::row`]: the values the whole model's
    /// initialisation gives them, whichever process draws them), or left zero with `None`
    /// (a checkpoint's rows overwrite them). Only the owned rows are ever allocated.
    pub fn draw(
        init: Option<&TableInit>,
        tables: &[(String, usize)],
        dim: usize,
        fields: Vec<usize>,
        (rank, ranks): (usize, usize),
    ) -> Result<Self, Error> {
        let mut c = Self {
            fields,
            rank,
            ranks,
            work_ids: vec![Vec::new(); tables.len()],
            ..Self::default()
        };
        for (k, (name, rows)) in tables.iter().enumerate() {
            let ids: Vec<u32> = (0..*rows as u32)
                .filter(|&id| owner(k, id, ranks) == rank)
                .collect();
            let mut value = alloc(ids.len(), dim)?;
            if let Some(init) = init {
                for (i, &id) in ids.iter().enumerate() {
                    init.row(k, id, value.row_mut(i));
                }
            }
            c.full_rows.push(*rows);
            c.owned_ids.push(ids);
            c.owned.push(Table {
                name: name.clone(),
                value,
            });
        }
        Ok(c)
    }

    /// The owned rows' part of per-table buffers laid out like the whole tables (`rows x
    /// d` floats each, as lazy Adam's moments are).
    pub fn owned_part(&self, full: &[Vec<f32>]) -> Vec<Vec<f32>> {
        full.iter()
            .zip(&self.owned_ids)
            .zip(&self.owned)
            .map(|((f, ids), t)| {
                let d = t.value.cols();
                let mut out = Vec::with_capacity(ids.len() * d);
                for &id in ids {
                    let r = id as usize;
                    out.extend_from_slice(&f[r * d..(r + 1) * d]);
                }
                out
            })
            .collect()
    }

    /// The owned index of row `id` of table `k`.
    pub fn owned_index(&self, k: usize, id: u32) -> Option<usize> {
        self.owned_ids[k].binary_search(&id).ok()
    }

    /// Before a step: the working ids of `batch`, the batch with working indices, and the
    /// working tables (owned rows copied; the others zero until the fetch writes them).
    /// An id outside its table is refused here, before any exchange.
    pub fn prepare(&mut self, batch: &Batch, work: &mut [Table]) -> Result<(), Error> {
        for w in &mut self.work_ids {
            w.clear();
        }
        let bags = batch.bag_ids.len();
        let singles = self.fields.len().saturating_sub(bags);
        let check = |k: usize, id: u32, full: &[usize]| -> Result<(), Error> {
            if id as usize >= full[k] {
                return Err(ModelError::Request(format!(
                    "id {id} is out of range for embedding table {k} of {} rows",
                    full[k]
                ))
                .into());
            }
            Ok(())
        };
        if batch.rows > 0 && singles > 0 {
            for row in batch.single_ids.chunks_exact(singles) {
                for (f, &id) in row.iter().enumerate() {
                    let k = self.fields[f];
                    check(k, id, &self.full_rows)?;
                    self.work_ids[k].push(id);
                }
            }
        }
        for (b, ids) in batch.bag_ids.iter().enumerate() {
            let k = self.fields[singles + b];
            for &id in ids {
                check(k, id, &self.full_rows)?;
                self.work_ids[k].push(id);
            }
        }
        for w in &mut self.work_ids {
            w.sort_unstable();
            w.dedup();
        }
        self.batch.clone_from(batch);
        let index = |w: &[u32], id: u32| w.binary_search(&id).unwrap_or(0) as u32;
        if self.batch.rows > 0 && singles > 0 {
            for row in self.batch.single_ids.chunks_exact_mut(singles) {
                for (f, id) in row.iter_mut().enumerate() {
                    *id = index(&self.work_ids[self.fields[f]], *id);
                }
            }
        }
        for (b, ids) in self.batch.bag_ids.iter_mut().enumerate() {
            let w = &self.work_ids[self.fields[singles + b]];
            for id in ids {
                *id = index(w, *id);
            }
        }
        for (k, t) in work.iter_mut().enumerate() {
            let d = self.owned[k].value.cols();
            let ids = &self.work_ids[k];
            if t.value.shape() != (ids.len(), d) {
                t.value = alloc(ids.len(), d)?;
            }
            for (i, &id) in ids.iter().enumerate() {
                if let Some(o) = self.owned_index(k, id) {
                    t.value
                        .row_mut(i)
                        .copy_from_slice(self.owned[k].value.row(o));
                }
            }
        }
        Ok(())
    }

    /// Gradient rows indexed by working row, re-indexed by id.
    pub fn to_global(&self, sparse: &mut [SparseRows]) {
        for (s, w) in sparse.iter_mut().zip(&self.work_ids) {
            for id in &mut s.ids {
                *id = w[*id as usize];
            }
        }
    }

    /// Gradient rows of owned ids, re-indexed by owned row.
    pub fn to_owned_index(&self, sparse: &mut [SparseRows]) -> Result<(), Error> {
        for (k, s) in sparse.iter_mut().enumerate() {
            for id in &mut s.ids {
                *id = self.owned_index(k, *id).ok_or_else(|| {
                    Error::Distributed(format!(
                        "a gradient for row {id} of table {k}, which this rank does not own"
                    ))
                })? as u32;
            }
        }
        Ok(())
    }

    /// Table `k` at full size, with this process's rows in place and zero elsewhere.
    pub fn whole(&self, k: usize) -> Result<Matrix, Error> {
        let d = self.owned[k].value.cols();
        let mut m = alloc(self.full_rows[k], d)?;
        for (i, &id) in self.owned_ids[k].iter().enumerate() {
            m.row_mut(id as usize)
                .copy_from_slice(self.owned[k].value.row(i));
        }
        Ok(m)
    }

    /// Floats of the owned rows.
    pub fn owned_floats(&self) -> usize {
        self.owned
            .iter()
            .map(|t| t.value.rows() * t.value.cols())
            .sum()
    }

    /// Floats of the whole tables.
    pub fn full_floats(&self) -> usize {
        self.full_rows
            .iter()
            .zip(&self.owned)
            .map(|(&r, t)| r * t.value.cols())
            .sum()
    }

    /// This process's rank and the number of processes.
    pub fn rank(&self) -> (usize, usize) {
        (self.rank, self.ranks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tables (4 and 6 rows, widths 2 and 3) whose row `i` holds `100 t + i`.
    fn tables() -> Vec<Table> {
        (0..2)
            .map(|t| {
                let (rows, d) = [(4, 2), (6, 3)][t];
                let mut value = Matrix::zeros(rows, d);
                for i in 0..rows {
                    value.row_mut(i).fill((100 * t + i) as f32);
                }
                Table {
                    name: format!("t{t}"),
                    value,
                }
            })
            .collect()
    }

    fn grads(dim: usize) -> SparseRows {
        let mut s = SparseRows::default();
        s.dim = dim;
        s
    }

    #[test]
    fn each_rank_keeps_its_rows_and_reads_a_batch_through_working_indices() {
        let ranks = 2;
        let mut held = 0;
        for rank in 0..ranks {
            let mut work = tables();
            // Field 0 reads table 1, field 1 table 0; one bag over table 1.
            let mut c = CompactTables::take(&mut work, vec![1, 0, 1], (rank, ranks)).unwrap();
            assert!(work.iter().all(|t| t.value.rows() == 0));
            assert_eq!(c.full_rows, vec![4, 6]);
            for (t, ids) in c.owned_ids.iter().enumerate() {
                assert!(ids.windows(2).all(|w| w[0] < w[1]));
                for (i, &id) in ids.iter().enumerate() {
                    assert_eq!(owner(t, id, ranks), rank);
                    assert_eq!(c.owned[t].value.row(i)[0], (100 * t) as f32 + id as f32);
                }
            }
            held += c.owned_floats();
            assert_eq!(c.full_floats(), 4 * 2 + 6 * 3);
            let mut batch = Batch::default();
            batch.rows = 2;
            batch.single_ids = vec![5, 3, 1, 3];
            batch.bag_offsets = vec![vec![0, 2, 3]];
            batch.bag_ids = vec![vec![5, 0, 5]];
            c.prepare(&batch, &mut work).unwrap();
            assert_eq!(c.work_ids, vec![vec![3], vec![0, 1, 5]]);
            assert_eq!(c.batch.single_ids, vec![2, 0, 1, 0]);
            assert_eq!(c.batch.bag_ids, vec![vec![2, 0, 2]]);
            assert_eq!(c.batch.bag_offsets, batch.bag_offsets);
            // Owned working rows are copied; the others wait for the fetch (zero).
            for (t, ids) in c.work_ids.iter().enumerate() {
                assert_eq!(work[t].value.rows(), ids.len());
                for (i, &id) in ids.iter().enumerate() {
                    let want = if owner(t, id, ranks) == rank {
                        (100 * t) as f32 + id as f32
                    } else {
                        0.0
                    };
                    assert_eq!(work[t].value.row(i)[0], want);
                }
            }
            // Gradients: working indices -> ids -> owned indices, order kept.
            let mut sparse = vec![grads(2), grads(3)];
            sparse[1].push(2, &[1.0; 3]);
            sparse[1].push(0, &[2.0; 3]);
            c.to_global(&mut sparse);
            assert_eq!(sparse[1].ids, vec![5, 0]);
            let mine: Vec<u32> = sparse[1]
                .ids
                .iter()
                .copied()
                .filter(|&id| owner(1, id, ranks) == rank)
                .collect();
            sparse[1].ids = mine.clone();
            c.to_owned_index(&mut sparse).unwrap();
            for (&i, &id) in sparse[1].ids.iter().zip(&mine) {
                assert_eq!(c.owned_ids[1][i as usize], id);
            }
            // A row this rank does not own is refused.
            let other = (0..6u32).find(|&id| owner(1, id, ranks) != rank).unwrap();
            let mut foreign = vec![grads(2), grads(3)];
            foreign[1].push(other, &[0.0; 3]);
            assert!(c.to_owned_index(&mut foreign).is_err());
            // The whole table: this rank's rows in place, zero elsewhere.
            let whole = c.whole(1).unwrap();
            for id in 0..6u32 {
                let want = if owner(1, id, ranks) == rank {
                    100.0 + id as f32
                } else {
                    0.0
                };
                assert_eq!(whole.row(id as usize), &[want; 3]);
            }
            // An id outside its table is refused before any exchange.
            batch.single_ids[0] = 6;
            let e = c.prepare(&batch, &mut work).unwrap_err().to_string();
            assert!(e.contains("id 6 is out of range"), "{e}");
        }
        assert_eq!(
            held,
            4 * 2 + 6 * 3,
            "every row is owned by exactly one rank"
        );
    }

    #[test]
    fn drawn_rows_are_the_whole_initialisation_s_rows() {
        let layout = model::InputLayout {
            fields: [("a", 9u32), ("b", 17)]
                .iter()
                .map(|&(name, vocab)| model::Field {
                    name: name.into(),
                    vocab,
                    bag: None,
                })
                .collect(),
            dense: 1,
            tasks: vec!["click".into(), "buy".into()],
        };
        let config = model::ModelConfig {
            embedding_dim: 4,
            ..model::ModelConfig::default()
        };
        let whole = model::Model::init(config.clone(), layout.clone()).unwrap();
        let init = TableInit::new(&config, &layout);
        let tables = vec![("a".to_string(), 9), ("b".to_string(), 17)];
        let mut held = 0;
        for rank in 0..3 {
            let c = CompactTables::draw(Some(&init), &tables, 4, vec![0, 1], (rank, 3)).unwrap();
            for k in 0..2 {
                for (i, &id) in c.owned_ids[k].iter().enumerate() {
                    assert_eq!(owner(k, id, 3), rank);
                    assert_eq!(
                        c.owned[k].value.row(i),
                        whole.embeddings[k].row(id as usize)
                    );
                }
            }
            held += c.owned_floats();
            assert_eq!(c.full_floats(), (9 + 17) * 4);
        }
        assert_eq!(held, (9 + 17) * 4, "every row is drawn by exactly one rank");
    }

    #[test]
    fn the_owned_part_of_moments_follows_the_owned_ids() {
        let mut work = tables();
        let c = CompactTables::take(&mut work, vec![0, 1], (1, 3)).unwrap();
        let full: Vec<Vec<f32>> = vec![
            (0..8).map(|x| x as f32).collect(),
            (0..18).map(|x| x as f32).collect(),
        ];
        let part = c.owned_part(&full);
        for (t, d) in [(0usize, 2usize), (1, 3)] {
            let want: Vec<f32> = c.owned_ids[t]
                .iter()
                .flat_map(|&id| (0..d).map(move |j| (id as usize * d + j) as f32))
                .collect();
            assert_eq!(part[t], want);
        }
    }
}
