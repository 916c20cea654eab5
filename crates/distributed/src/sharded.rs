//! Row-sharded embedding tables over MPI: the three exchanges of `--shard-tables`.
//!
//! Rank `q` owns the rows `resflow::reduce::owner(table, id, ranks) == q`; only the owner's
//! optimiser updates a row, so only the owner's copy is current. Every step:
//!
//! ```text
//! fetch (before the forward pass)
//!   each rank: the distinct ids its share looks up that others own, per owner
//!   all-to-all of message lengths, all-to-allv of [counts per table | ids]  -> owners
//!   owners: the rows asked for, in the order asked     all-to-allv of rows  -> askers
//! gradients (after the backward pass)
//!   each rank: its (id, gradient row) list per table, in order, cut by owner
//!   all-to-all of lengths, all-to-allv of [counts per table | ids], all-to-allv of rows
//!   owner: table t's list = rank 0's entries for t ++ rank 1's ++ ...
//! ```
//!
//! The replicated mode gives every rank the concatenation of every rank's list; an owner
//! here receives exactly the entries of that list that touch its rows, in the same order,
//! and lazy Adam sums repeated ids in order of appearance: each owned row receives the same
//! additions in the same order, so the parameters equal the replicated ones bit for bit.
//! Each rank stores only its own rows ([`CompactTables`]); the fetch fills the step's
//! working table (an evaluation batch's too). `gather` (for the export) sends every
//! owner's rows to rank 0 alone, which assembles the whole tables.

use mpi::collective::{CommunicatorCollectives, Root};
use mpi::datatype::{Partition, PartitionMut};
use mpi::topology::{Communicator, SimpleCommunicator};

use autodiff::{SparseRows, Table};
use resflow::compact::CompactTables;
use resflow::reduce::owner;
use tensor::Matrix;

/// The buffers of the three exchanges (kept between steps).
#[derive(Debug, Default)]
pub(crate) struct Sharding {
    want: Vec<Vec<u32>>,
    send_u32: Vec<u32>,
    recv_u32: Vec<u32>,
    send_f32: Vec<f32>,
    recv_f32: Vec<f32>,
    lens: Vec<i32>,
    rlens: Vec<i32>,
    counts: Vec<i32>,
    displs: Vec<i32>,
    rcounts: Vec<i32>,
    rdispls: Vec<i32>,
    fdispls: Vec<i32>,
    frdispls: Vec<i32>,
}

/// Bytes sent to other ranks by one exchange.
pub(crate) type Sent = usize;

fn displs_of(counts: &[i32], displs: &mut Vec<i32>) -> Result<usize, resflow::Error> {
    displs.clear();
    let mut at = 0usize;
    for &c in counts {
        displs.push(crate::mpi_reduce::count("a buffer", at)?);
        at += c as usize;
    }
    crate::mpi_reduce::count("a buffer", at)?;
    Ok(at)
}

fn too_big(floats: usize) -> resflow::Error {
    resflow::Error::Distributed(format!(
        "cannot allocate {floats} floats to gather a table's rows on rank 0"
    ))
}

fn bad_peer(what: &str) -> resflow::Error {
    resflow::Error::Distributed(format!(
        "row-sharded tables: another rank sent {what}; every rank must run the same build \
         with the same options"
    ))
}

impl Sharding {
    /// The buffers for `tables` tables.
    pub fn new(tables: usize) -> Self {
        Self {
            want: vec![Vec::new(); tables],
            ..Self::default()
        }
    }

    /// An all-to-allv of `u32` messages: `send_u32` holds one message per rank (lengths in
    /// `lens`); the messages received land in `recv_u32` (lengths in `rlens`, offsets in
    /// `rdispls`).
    fn exchange_u32(&mut self, world: &SimpleCommunicator) -> Result<(), resflow::Error> {
        let r = self.lens.len();
        self.rlens.resize(r, 0);
        world.all_to_all_into(&self.lens[..], &mut self.rlens[..]);
        displs_of(&self.lens, &mut self.displs)?;
        let total = displs_of(&self.rlens, &mut self.rdispls)?;
        self.recv_u32.resize(total, 0);
        let send = Partition::new(&self.send_u32[..], &self.lens[..], &self.displs[..]);
        let mut recv =
            PartitionMut::new(&mut self.recv_u32[..], &self.rlens[..], &self.rdispls[..]);
        world.all_to_all_varcount_into(&send, &mut recv);
        Ok(())
    }

    /// An all-to-allv of `f32` messages whose lengths both sides already know (`counts`
    /// sent, `rcounts` received, at offsets `frdispls`; the `u32` offsets stay).
    fn exchange_f32(&mut self, world: &SimpleCommunicator) -> Result<(), resflow::Error> {
        displs_of(&self.counts, &mut self.fdispls)?;
        let total = displs_of(&self.rcounts, &mut self.frdispls)?;
        self.recv_f32.resize(total, 0.0);
        let send = Partition::new(&self.send_f32[..], &self.counts[..], &self.fdispls[..]);
        let mut recv = PartitionMut::new(
            &mut self.recv_f32[..],
            &self.rcounts[..],
            &self.frdispls[..],
        );
        world.all_to_all_varcount_into(&send, &mut recv);
        Ok(())
    }

    /// Packs per-table id lists into one message per owner: `[count of table 0, ...,
    /// count of table T-1, ids of table 0, ids of table 1, ...]` (the message to this rank
    /// itself is empty when `skip_self`).
    fn pack_requests<'a>(
        &mut self,
        (rank, ranks, t): (usize, usize, usize),
        lists: impl Fn(usize) -> &'a [u32] + Copy,
        skip_self: bool,
    ) -> Result<(), resflow::Error> {
        self.send_u32.clear();
        self.lens.clear();
        for q in 0..ranks {
            let start = self.send_u32.len();
            if !(skip_self && q == rank) {
                for k in 0..t {
                    let n = lists(k)
                        .iter()
                        .filter(|&&id| owner(k, id, ranks) == q)
                        .count();
                    self.send_u32.push(n as u32);
                }
                for k in 0..t {
                    self.send_u32
                        .extend(lists(k).iter().filter(|&&id| owner(k, id, ranks) == q));
                }
            }
            self.lens.push(crate::mpi_reduce::count(
                "a message",
                self.send_u32.len() - start,
            )?);
        }
        Ok(())
    }

    /// Before the forward pass: the current value of every working row (the rows the
    /// step's batch reads, [`CompactTables::prepare`]) that another rank owns, written into
    /// the working tables `work`. Returns the bytes sent to others.
    pub fn fetch(
        &mut self,
        world: &SimpleCommunicator,
        rank: usize,
        ranks: usize,
        compact: &CompactTables,
        work: &mut [Table],
    ) -> Result<Sent, resflow::Error> {
        let t = work.len();
        for (k, w) in self.want.iter_mut().enumerate() {
            w.clear();
            w.extend(
                compact.work_ids[k]
                    .iter()
                    .filter(|&&id| owner(k, id, ranks) != rank),
            );
        }
        let want = std::mem::take(&mut self.want);
        let packed = self.pack_requests((rank, ranks, t), |k| &want[k][..], true);
        self.want = want;
        packed?;
        let sent_ids = 4 * self.send_u32.len();
        self.exchange_u32(world)?;
        // Owners: the rows asked for, in the order asked.
        self.send_f32.clear();
        self.counts.clear();
        for q in 0..ranks {
            let start = self.send_f32.len();
            let (at, len) = (self.rdispls[q] as usize, self.rlens[q] as usize);
            if len > 0 {
                let msg = &self.recv_u32[at..at + len];
                if msg.len() < t {
                    return Err(bad_peer("a request without its counts"));
                }
                let (heads, ids) = msg.split_at(t);
                let mut i = 0usize;
                for (k, &n) in heads.iter().enumerate() {
                    let n = n as usize;
                    let Some(some) = ids.get(i..i + n) else {
                        return Err(bad_peer("a request shorter than its counts"));
                    };
                    for &id in some {
                        let Some(o) = compact.owned_index(k, id) else {
                            return Err(bad_peer("a request for a row this rank does not own"));
                        };
                        self.send_f32
                            .extend_from_slice(compact.owned[k].value.row(o));
                    }
                    i += n;
                }
            }
            self.counts.push(crate::mpi_reduce::count(
                "a message",
                self.send_f32.len() - start,
            )?);
        }
        // What each owner sends back follows from what was asked of it.
        self.rcounts.clear();
        for q in 0..ranks {
            let mut n = 0usize;
            if q != rank {
                for (k, w) in self.want.iter().enumerate() {
                    let c = w.iter().filter(|&&id| owner(k, id, ranks) == q).count();
                    n += c * work[k].value.cols();
                }
            }
            self.rcounts.push(crate::mpi_reduce::count("a message", n)?);
        }
        let sent_rows = 4 * self.send_f32.len();
        self.exchange_f32(world)?;
        // Write the rows, walking the requests in the order they were packed.
        for q in (0..ranks).filter(|&q| q != rank) {
            let mut at = self.frdispls[q] as usize;
            for (k, w) in self.want.iter().enumerate() {
                let d = work[k].value.cols();
                let ids = &compact.work_ids[k];
                for &id in w.iter().filter(|&&id| owner(k, id, ranks) == q) {
                    let Ok(i) = ids.binary_search(&id) else {
                        return Err(bad_peer("a row this rank did not ask for"));
                    };
                    work[k]
                        .value
                        .row_mut(i)
                        .copy_from_slice(&self.recv_f32[at..at + d]);
                    at += d;
                }
            }
        }
        Ok(sent_ids + sent_rows)
    }

    /// After the backward pass: each table's (id, gradient) list is cut by owner and
    /// exchanged; this rank keeps the entries for its rows, every rank's in rank order.
    pub fn route_gradients(
        &mut self,
        world: &SimpleCommunicator,
        rank: usize,
        ranks: usize,
        sparse: &mut [SparseRows],
    ) -> Result<Sent, resflow::Error> {
        let t = sparse.len();
        // Ids and counts, one message per owner (this rank's own included, so that its
        // entries take their place in rank order).
        self.pack_requests((rank, ranks, t), |k| &sparse[k].ids[..], false)?;
        let sent_ids = 4 * (self.send_u32.len() - self.lens[rank] as usize);
        self.send_f32.clear();
        self.counts.clear();
        for q in 0..ranks {
            let start = self.send_f32.len();
            for (k, s) in sparse.iter().enumerate() {
                let d = s.dim;
                for (j, &id) in s.ids.iter().enumerate() {
                    if owner(k, id, ranks) == q {
                        self.send_f32.extend_from_slice(&s.rows[j * d..(j + 1) * d]);
                    }
                }
            }
            self.counts.push(crate::mpi_reduce::count(
                "a message",
                self.send_f32.len() - start,
            )?);
        }
        let sent_rows = 4 * (self.send_f32.len() - self.counts[rank] as usize);
        self.exchange_u32(world)?;
        self.rcounts.clear();
        for q in 0..ranks {
            let (at, len) = (self.rdispls[q] as usize, self.rlens[q] as usize);
            if len < t {
                return Err(bad_peer("gradients without their counts"));
            }
            let heads = &self.recv_u32[at..at + t];
            let n: usize = heads
                .iter()
                .zip(sparse.iter())
                .map(|(&c, s)| c as usize * s.dim)
                .sum();
            let ids: usize = heads.iter().map(|&c| c as usize).sum();
            if ids != len - t {
                return Err(bad_peer("gradient ids that do not match their counts"));
            }
            self.rcounts.push(crate::mpi_reduce::count("a message", n)?);
        }
        self.exchange_f32(world)?;
        for s in sparse.iter_mut() {
            s.clear();
        }
        // Table k's list: rank 0's entries for k, then rank 1's, ...
        let mut row_at = 0usize;
        for q in 0..ranks {
            let at = self.rdispls[q] as usize;
            let heads = &self.recv_u32[at..at + t];
            let mut id_at = at + t;
            for (k, s) in sparse.iter_mut().enumerate() {
                let d = s.dim;
                for _ in 0..heads[k] {
                    let id = self.recv_u32[id_at];
                    if owner(k, id, ranks) != rank {
                        return Err(bad_peer("a gradient for a row this rank does not own"));
                    }
                    s.push(id, &self.recv_f32[row_at..row_at + d]);
                    id_at += 1;
                    row_at += d;
                }
            }
        }
        Ok(sent_ids + sent_rows)
    }

    /// Every rank's owned rows to rank 0, one table at a time: rank 0 returns the whole
    /// tables, the others `None`. A rank sends its rows in increasing id order, and rank 0
    /// knows which ids each rank owns, so no ids travel. Rank 0 holds the whole tables and
    /// one table's rows in flight; the others never hold more than their own rows.
    /// Returns the bytes sent.
    pub fn gather(
        &mut self,
        world: &SimpleCommunicator,
        rank: usize,
        ranks: usize,
        compact: &CompactTables,
    ) -> Result<(Option<Vec<Matrix>>, Sent), resflow::Error> {
        let root = world.process_at_rank(0);
        let mut whole = Vec::new();
        let mut sent = 0usize;
        for k in 0..compact.owned.len() {
            let own = &compact.owned[k].value;
            let d = own.cols();
            // The owned rows are sent as they are stored (copied only if padded).
            let copy: Vec<f32>;
            let send: &[f32] = if own.ld() == d {
                own.as_slice()
            } else {
                copy = (0..own.rows()).flat_map(|i| own.row(i).to_vec()).collect();
                &copy
            };
            if rank != 0 {
                root.gather_varcount_into(send);
                sent += 4 * send.len();
                continue;
            }
            // Rank 0: every rank's ids of table k, in increasing order.
            let rows = compact.full_rows[k];
            let mut per = vec![0usize; ranks];
            for id in 0..rows as u32 {
                per[owner(k, id, ranks)] += d;
            }
            self.counts.clear();
            for n in per {
                self.counts
                    .push(crate::mpi_reduce::count("a table's rows", n)?);
            }
            let total = displs_of(&self.counts, &mut self.displs)?;
            self.recv_f32.clear();
            self.recv_f32
                .try_reserve_exact(total)
                .map_err(|_| too_big(total))?;
            self.recv_f32.resize(total, 0.0);
            {
                let mut all =
                    PartitionMut::new(&mut self.recv_f32[..], &self.counts[..], &self.displs[..]);
                root.gather_varcount_into_root(send, &mut all);
            }
            let mut m = compact.whole(k)?;
            let mut at: Vec<usize> = self.displs.iter().map(|&x| x as usize).collect();
            for id in 0..rows {
                let q = owner(k, id as u32, ranks);
                if q != 0 {
                    m.row_mut(id)
                        .copy_from_slice(&self.recv_f32[at[q]..at[q] + d]);
                    at[q] += d;
                }
            }
            whole.push(m);
        }
        // The buffer was as large as a table: give it back.
        self.recv_f32 = Vec::new();
        Ok(((rank == 0).then_some(whole), sent))
    }
}
