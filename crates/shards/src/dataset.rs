//! A dataset is a directory: `schema.json`, `manifest.json` and `shard-NNNNN.rfs` files.
//! [`Dataset`] opens the shards the manifest lists (validated, memory-mapped) and [`Batches`] walks its rows in batches, shuffled
//! with a seed or in order.
//!
//! Shuffling is two-level, so that reading stays local: the order of the shards is
//! shuffled, and within a shard the rows are permuted window by window (64 Ki rows per
//! window by default, a few MiB of columns, which stay in cache while they are gathered).
//! A batch is gathered into a [`Batch`] that the caller owns and reuses: after the first
//! batch, iterating allocates nothing. [`Batch::split`] cuts it into contiguous row ranges,
//! one per worker thread, as borrowed [`BatchView`]s.
//!
//! Several processes training one model (one per machine or socket) walk the same global
//! batches with the same seed, and each gathers only its share ([`Batches::with_share`]):
//! the worker views extend to processes. With `T` workers per process and `R` processes,
//! the global batch is cut into `R x T` parts exactly as [`Batch::split`] would cut it, and
//! process `r` gathers parts `r T .. (r + 1) T`; its own `split(T)` then yields the same
//! row ranges worker `r T + k` of a single process with `R x T` workers would get.
//!
//! ```text
//! global batch of 10 rows, 2 processes x 2 workers: split(4) = 0..3 | 3..6 | 6..8 | 8..10
//!   process 0 gathers rows 0..6  -> split(2) = 0..3 | 3..6
//!   process 1 gathers rows 6..10 -> split(2) = 0..2 | 2..4   (rows 6..8 and 8..10)
//! ```
//! (The parts' sizes never grow along the batch and differ by at most one row, so a
//! process's consecutive parts, cut again into as many parts, keep their boundaries.)

use std::path::{Path, PathBuf};

use crate::error::{Result, ShardError, io};
use crate::manifest::Manifest;
use crate::reader::{OpenOptions, Shard};
use crate::schema::Schema;

/// Reads and validates `dir/schema.json`.
pub(crate) fn read_schema(dir: &Path) -> Result<Schema> {
    let schema_path = dir.join("schema.json");
    let text = std::fs::read_to_string(&schema_path).map_err(io(&schema_path))?;
    Schema::from_json(&text)
        .map_err(|e| ShardError::Schema(format!("{}: {e}", schema_path.display())))
}

/// An opened dataset.
#[derive(Debug)]
pub struct Dataset {
    dir: PathBuf,
    schema: Schema,
    shards: Vec<Shard>,
    rows: usize,
}

impl Dataset {
    /// Opens `dir` with checksum verification.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens `dir`: reads `schema.json` and `manifest.json`, checks that the shard files
    /// present are exactly those the manifest lists (none missing, none extra, the schema
    /// unchanged), then opens and validates every shard in name order and checks its rows,
    /// size and digest against the manifest.
    pub fn open_with(dir: &Path, options: OpenOptions) -> Result<Self> {
        let schema = read_schema(dir)?;
        let manifest = Manifest::read(dir)?;
        manifest.check_dir(dir, &schema)?;
        let shards = manifest
            .shards
            .iter()
            .map(|entry| {
                let shard = Shard::open(&dir.join(&entry.name), &schema, options)?;
                manifest.check_shard(dir, entry, &shard)?;
                Ok(shard)
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = shards.iter().map(Shard::rows).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            schema,
            shards,
            rows,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Total rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The shards, in file-name order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// An empty batch shaped for this dataset.
    pub fn new_batch(&self) -> Batch {
        Batch {
            tasks: self.schema.tasks.len(),
            single: self.schema.single.len(),
            dense: self.schema.dense.count,
            bag_offsets: vec![vec![0]; self.schema.multi.len()],
            bag_ids: vec![Vec::new(); self.schema.multi.len()],
            ..Batch::default()
        }
    }

    /// Batches of `batch_size` rows; shuffled with `seed`, or in storage order with `None`.
    pub fn batches(&self, batch_size: usize, seed: Option<u64>) -> Batches<'_> {
        Batches::new(self, batch_size.max(1), seed, 1 << 16)
    }
}

/// Rows gathered from a dataset, column by column (owned, reused between batches).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Rows in the batch.
    pub rows: usize,
    /// Rows of the global batch this one is a share of (0: not a share, see
    /// [`Batch::global_rows`]).
    global_rows: usize,
    tasks: usize,
    single: usize,
    dense: usize,
    /// `rows x tasks` labels.
    pub labels: Vec<f32>,
    /// `rows x single fields` ids.
    pub single_ids: Vec<u32>,
    /// Per bag: `rows + 1` offsets into its ids (starting at 0).
    pub bag_offsets: Vec<Vec<u64>>,
    /// Per bag: the ids.
    pub bag_ids: Vec<Vec<u32>>,
    /// `rows x dense` features.
    pub dense_values: Vec<f32>,
    /// Group ids (empty without a group column).
    pub group: Vec<u64>,
    /// Sample weights (empty without a weight column).
    pub weight: Vec<f32>,
}

impl Batch {
    fn clear(&mut self) {
        self.rows = 0;
        self.global_rows = 0;
        self.labels.clear();
        self.single_ids.clear();
        for (o, i) in self.bag_offsets.iter_mut().zip(&mut self.bag_ids) {
            o.truncate(1);
            i.clear();
        }
        self.dense_values.clear();
        self.group.clear();
        self.weight.clear();
    }

    /// Appends row `r` of the shard whose columns are `c`.
    #[inline]
    fn push_row(&mut self, c: &Columns<'_>, r: usize) {
        let (t, s, d) = (self.tasks, self.single, self.dense);
        self.labels.extend_from_slice(&c.labels[r * t..(r + 1) * t]);
        self.single_ids
            .extend_from_slice(&c.single[r * s..(r + 1) * s]);
        for ((o, i), &(off, ids)) in self
            .bag_offsets
            .iter_mut()
            .zip(&mut self.bag_ids)
            .zip(&c.bags)
        {
            i.extend_from_slice(&ids[off[r] as usize..off[r + 1] as usize]);
            o.push(i.len() as u64);
        }
        self.dense_values
            .extend_from_slice(&c.dense[r * d..(r + 1) * d]);
        if let Some(&g) = c.group.get(r) {
            self.group.push(g);
        }
        if let Some(&w) = c.weight.get(r) {
            self.weight.push(w);
        }
        self.rows += 1;
    }

    /// The whole batch as a view.
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            batch: self,
            start: 0,
            end: self.rows,
        }
    }

    /// Rows of the global batch: [`Batch::rows`], unless this batch is one process's
    /// share of a larger one ([`Batches::with_share`]). Losses are divided by it, so that the
    /// gradients summed over every process are those of the global batch's mean.
    pub fn global_rows(&self) -> usize {
        if self.global_rows == 0 {
            self.rows
        } else {
            self.global_rows
        }
    }

    /// `parts` contiguous row ranges of near-equal size (the first ones one row longer),
    /// one per worker; empty ranges are omitted.
    pub fn split(&self, parts: usize) -> impl Iterator<Item = BatchView<'_>> {
        let parts = parts.max(1);
        (0..parts).filter_map(move |p| {
            let r = part_range(self.rows, p, parts);
            (!r.is_empty()).then_some(BatchView {
                batch: self,
                start: r.start,
                end: r.end,
            })
        })
    }
}

/// Rows of part `p` when `rows` rows are cut into `parts` contiguous ranges of near-equal
/// size, the first `rows % parts` of them one row longer ([`Batch::split`]'s cut).
pub fn part_range(rows: usize, p: usize, parts: usize) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let (base, extra) = (rows / parts, rows % parts);
    let start = p * base + p.min(extra);
    start..start + base + usize::from(p < extra)
}

/// The parts of every global batch one process gathers ([`Batches::with_share`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The first part this process gathers.
    pub first: usize,
    /// How many consecutive parts it gathers (its worker threads).
    pub count: usize,
    /// Parts in all (every process's worker threads together).
    pub parts: usize,
}

impl Share {
    /// Process `rank` of `ranks`, each with `threads` workers.
    pub fn of_rank(rank: usize, ranks: usize, threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            first: rank * threads,
            count: threads,
            parts: ranks.max(1) * threads,
        }
    }

    /// The rows of a global batch of `rows` rows this share covers.
    pub fn rows(&self, rows: usize) -> std::ops::Range<usize> {
        let start = part_range(rows, self.first, self.parts).start;
        let last = self.first + self.count.max(1) - 1;
        start..part_range(rows, last, self.parts).end.max(start)
    }
}

/// Rows `start..end` of a [`Batch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    batch: &'a Batch,
    start: usize,
    end: usize,
}

impl<'a> BatchView<'a> {
    /// Rows in the view.
    pub fn rows(&self) -> usize {
        self.end - self.start
    }

    /// First row of the view within its batch.
    pub fn start(&self) -> usize {
        self.start
    }

    /// `rows x tasks` labels.
    pub fn labels(&self) -> &'a [f32] {
        let t = self.batch.tasks;
        &self.batch.labels[self.start * t..self.end * t]
    }

    /// The labels of task `k`, one per row, copied into `out` (cleared first).
    pub fn task_labels(&self, k: usize, out: &mut Vec<f32>) {
        let t = self.batch.tasks;
        out.clear();
        out.extend(self.labels().chunks_exact(t).map(|r| r[k]));
    }

    /// `rows x single fields` ids.
    pub fn single(&self) -> &'a [u32] {
        let s = self.batch.single;
        &self.batch.single_ids[self.start * s..self.end * s]
    }

    /// Bag `k` of the view: `rows + 1` offsets (starting wherever the view starts in the
    /// batch) and exactly the ids they cover, `ids[offsets[i] - offsets[0]..]`.
    pub fn bag(&self, k: usize) -> (&'a [u64], &'a [u32]) {
        let o = &self.batch.bag_offsets[k][self.start..=self.end];
        (
            o,
            &self.batch.bag_ids[k][o[0] as usize..o[o.len() - 1] as usize],
        )
    }

    /// `rows x dense` features.
    pub fn dense(&self) -> &'a [f32] {
        let d = self.batch.dense;
        &self.batch.dense_values[self.start * d..self.end * d]
    }

    /// Group ids (empty without a group column).
    pub fn group(&self) -> &'a [u64] {
        if self.batch.group.is_empty() {
            &[]
        } else {
            &self.batch.group[self.start..self.end]
        }
    }

    /// Sample weights (empty without a weight column).
    pub fn weight(&self) -> &'a [f32] {
        if self.batch.weight.is_empty() {
            &[]
        } else {
            &self.batch.weight[self.start..self.end]
        }
    }
}

/// A shard's columns, looked up once per window rather than once per row.
#[derive(Debug, Default)]
struct Columns<'d> {
    labels: &'d [f32],
    single: &'d [u32],
    bags: Vec<(&'d [u64], &'d [u32])>,
    dense: &'d [f32],
    group: &'d [u64],
    weight: &'d [f32],
}

impl<'d> Columns<'d> {
    fn load(&mut self, shard: &'d Shard, bags: usize) {
        self.labels = shard.labels();
        self.single = shard.single();
        self.bags.clear();
        self.bags
            .extend((0..bags).map(|k| (shard.bag_offsets(k), shard.bag_ids(k))));
        self.dense = shard.dense();
        self.group = shard.group();
        self.weight = shard.weight();
    }
}

/// SplitMix64, for reproducible shuffles.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// An iterator over a dataset's batches; fill a reused [`Batch`] with [`Batches::next_into`].
#[derive(Debug)]
pub struct Batches<'d> {
    ds: &'d Dataset,
    batch_size: usize,
    rng: Option<Rng>,
    window: usize,
    shard_order: Vec<usize>,
    /// Position in `shard_order`.
    shard_pos: usize,
    /// Start of the current window in the current shard.
    window_start: usize,
    /// Row order inside the current window, and the next position in it.
    rows: Vec<u32>,
    row_pos: usize,
    /// Columns of the current shard.
    columns: Columns<'d>,
    /// Only this share of every batch is gathered (see [`Batches::with_share`]).
    share: Option<Share>,
    /// A global batch's rows as (shard, row), when gathering a share.
    pending: Vec<(u32, u32)>,
}

impl<'d> Batches<'d> {
    fn new(ds: &'d Dataset, batch_size: usize, seed: Option<u64>, window: usize) -> Self {
        let mut rng = seed.map(Rng);
        let mut shard_order: Vec<usize> = (0..ds.shards.len()).collect();
        if let Some(r) = rng.as_mut() {
            r.shuffle(&mut shard_order);
        }
        Self {
            ds,
            batch_size,
            rng,
            window: window.max(1),
            shard_order,
            shard_pos: 0,
            window_start: 0,
            rows: Vec::new(),
            row_pos: 0,
            columns: Columns::default(),
            share: None,
            pending: Vec::new(),
        }
    }

    /// Gathers only `share` of every global batch: the batches are those of every other
    /// process walking the same dataset with the same size and seed, and
    /// [`Batch::global_rows`] says how many rows the global batch holds. A share may be
    /// empty (a last batch with fewer rows than parts): [`Batches::next_into`] still returns
    /// true while global batches remain, so that every process takes the same steps.
    pub fn with_share(mut self, share: Share) -> Self {
        self.share = (share.parts > 1).then_some(share);
        self
    }

    /// Sets the shuffle window (rows permuted together inside a shard).
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// Prepares the next window; false when the dataset is exhausted.
    fn next_window(&mut self) -> bool {
        loop {
            let Some(&s) = self.shard_order.get(self.shard_pos) else {
                return false;
            };
            let n = self.ds.shards[s].rows();
            if self.window_start >= n {
                self.shard_pos += 1;
                self.window_start = 0;
                continue;
            }
            let end = (self.window_start + self.window).min(n);
            self.rows.clear();
            self.rows.extend(self.window_start as u32..end as u32);
            if let Some(r) = self.rng.as_mut() {
                r.shuffle(&mut self.rows);
            }
            self.row_pos = 0;
            self.window_start = end;
            self.columns
                .load(&self.ds.shards[s], self.ds.schema.multi.len());
            return true;
        }
    }

    /// Fills `batch` with up to `batch_size` rows; returns false when no row is left.
    pub fn next_into(&mut self, batch: &mut Batch) -> bool {
        let s = &self.ds.schema;
        if (batch.tasks, batch.single, batch.dense, batch.bag_ids.len())
            != (s.tasks.len(), s.single.len(), s.dense.count, s.multi.len())
        {
            // A batch shaped for another dataset: reshape it for this one.
            *batch = self.ds.new_batch();
        }
        batch.clear();
        if let Some(share) = self.share {
            return self.next_share_into(share, batch);
        }
        while batch.rows < self.batch_size {
            if self.row_pos == self.rows.len() && !self.next_window() {
                break;
            }
            let take = (self.batch_size - batch.rows).min(self.rows.len() - self.row_pos);
            for &r in &self.rows[self.row_pos..self.row_pos + take] {
                batch.push_row(&self.columns, r as usize);
            }
            self.row_pos += take;
        }
        batch.rows > 0
    }

    /// [`Batches::next_into`] for a share: the global batch's row order is walked in full
    /// (cheap: indices only), and only the share's rows are gathered.
    fn next_share_into(&mut self, share: Share, batch: &mut Batch) -> bool {
        self.pending.clear();
        while self.pending.len() < self.batch_size {
            if self.row_pos == self.rows.len() && !self.next_window() {
                break;
            }
            let take = (self.batch_size - self.pending.len()).min(self.rows.len() - self.row_pos);
            let shard = self.shard_order[self.shard_pos] as u32;
            self.pending.extend(
                self.rows[self.row_pos..self.row_pos + take]
                    .iter()
                    .map(|&r| (shard, r)),
            );
            self.row_pos += take;
        }
        let global = self.pending.len();
        // The columns are those of the rows' shard (in share mode nothing else reads them).
        let mut loaded = None;
        for &(shard, r) in &self.pending[share.rows(global)] {
            if loaded != Some(shard) {
                self.columns
                    .load(&self.ds.shards[shard as usize], self.ds.schema.multi.len());
                loaded = Some(shard);
            }
            batch.push_row(&self.columns, r as usize);
        }
        batch.global_rows = global;
        global > 0
    }
}
