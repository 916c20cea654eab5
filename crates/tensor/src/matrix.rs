//! Row-major f32 matrices and the borrowed views every kernel works on.
//!
//! [`Matrix`] owns its storage: a 64-byte aligned buffer (one cache line, one AVX-512
//! register) holding `rows` rows of `ld` floats each, of which the first `cols` are the
//! matrix. Padding a row up to `ld` keeps every row aligned when `ld` is a multiple of 16.
//!
//! [`MatRef`] and [`MatMut`] are views: a slice plus a shape and two strides, so element
//! `(i, j)` lives at `data[i * rs + j * cs]`. A row-major matrix has `cs = 1, rs = ld`; its
//! transpose is the same slice with the strides swapped, which is why [`MatRef::t`] and
//! [`MatRef::sub`] cost nothing: no element is copied.

use crate::error::TensorError;

/// One cache line of floats: the unit of [`Matrix`] storage, which gives 64-byte alignment.
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Buffers of at least this many bytes ask the kernel for transparent huge pages.
///
/// An embedding table of the Ali-CCP layout is up to 405 MB and its two Adam moments as
/// much again; a batch reads and writes a few thousand random rows of each. With 4 KiB
/// pages every row is a TLB miss and every first touch a page fault (1.83 M faults and
/// 11% of the cycles clearing pages over one epoch, measured with `perf`); 2 MiB pages
/// divide both by 512. Small buffers keep ordinary pages.
pub const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// The size of a transparent huge page on x86-64 and aarch64 Linux.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned part of `buf` with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`), when it is at least [`HUGE_PAGE_MIN_BYTES`] long. Advice
/// only: when huge pages are disabled or unavailable nothing changes, and no error is
/// reported. Call it before the first touch of the pages.
pub fn advise_huge_pages<T: bytemuck::Pod>(buf: &mut [T]) {
    advise_range(buf.as_mut_ptr() as usize, std::mem::size_of_val(buf));
}

/// [`advise_huge_pages`] on the `bytes` bytes at address `addr`, which must lie inside one
/// live allocation that the caller holds mutably (initialised or not).
fn advise_range(addr: usize, bytes: usize) {
    if bytes < HUGE_PAGE_MIN_BYTES {
        return;
    }
    let start = addr.next_multiple_of(HUGE_PAGE);
    let end = (addr + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        madvise_huge(start, end - start);
    }
}

#[cfg(target_os = "linux")]
fn madvise_huge(addr: usize, len: usize) {
    // SAFETY: `addr..addr + len` lies inside a live allocation the caller holds mutably
    // (the contract of `advise_range`), and is page-aligned. MADV_HUGEPAGE changes how the
    // kernel backs those pages, never their contents, so no Rust-visible memory changes.
    let _ = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn madvise_huge(_addr: usize, _len: usize) {}

/// Writes one zero in every 4 KiB page of `buf`, so that the kernel maps (and clears) the
/// pages now rather than at their first use. With huge pages advised, the first write of
/// each 2 MiB page maps all of it and the others are ordinary stores. `buf` must be zero
/// already (a fresh zeroed allocation); split it into chunks to fault it in on several
/// threads.
pub fn prefault_zeroed(buf: &mut [f32]) {
    // A write, not a read: reading a fresh zeroed page maps the shared zero page, and the
    // first write would fault again to copy it. `black_box` keeps the compiler from
    // dropping the store of a zero it might know is already there.
    let buf = std::hint::black_box(buf);
    for x in buf.iter_mut().step_by(1024) {
        *x = 0.0;
    }
}

/// `len` zeros in a fresh allocation, or an error when the memory cannot be had (a size
/// that comes from a file or a command line must not abort the process). The memory comes
/// from the allocator's zeroed path (`calloc`): large blocks are fresh pages, so nothing is
/// written here, and huge pages are advised for them ([`advise_huge_pages`]).
pub fn try_zeroed_vec(len: usize) -> Result<Vec<f32>, TensorError> {
    let mut v: Vec<f32> = zeroed(len, "try_zeroed_vec")?;
    advise_huge_pages(&mut v);
    Ok(v)
}

/// A vector of `len` zeroed `T` through the global allocator's zeroed path.
fn zeroed<T: bytemuck::Zeroable>(len: usize, what: &'static str) -> Result<Vec<T>, TensorError> {
    let too_big = || TensorError::Alloc {
        what,
        bytes: len.saturating_mul(std::mem::size_of::<T>()),
    };
    if len == 0 || std::mem::size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(len).map_err(|_| too_big())?;
    // SAFETY: `layout` has a non-zero size (checked above).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(too_big());
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `[T; len]`
    // (the size and alignment `Vec<T>` with capacity `len` uses), and its `len` elements
    // are initialised: all-zero bytes are a valid `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, len, len) })
}

/// `len` zeroed cache lines, huge pages advised for a large buffer before its first touch.
///
/// A line is 64-byte aligned, more than `calloc` guarantees, so the global allocator's
/// zeroed path would allocate and then `memset` the whole buffer: on 4 KiB pages, before
/// any advice could reach them. A large buffer is therefore reserved
/// uninitialised, advised, and only then written with zeros, so that its first touch maps
/// 2 MiB at a time. Small buffers take the zeroed path.
///
/// Measured on the full Ali-CCP tables (643 MB, `perf record -e page-faults`): before, the
/// tables' `memset` took 157,000 of a training run's 186,000 page faults, and the 405 MB
/// table held no huge page during training (`AnonHugePages` of its mapping in
/// `/proc/PID/smaps`), so every row a batch read or updated was a TLB miss.
fn zeroed_lines(len: usize, what: &'static str) -> Result<Vec<Line>, TensorError> {
    let bytes = len.saturating_mul(std::mem::size_of::<Line>());
    if bytes < HUGE_PAGE_MIN_BYTES {
        return zeroed(len, what);
    }
    let mut lines: Vec<Line> = Vec::new();
    lines
        .try_reserve_exact(len)
        .map_err(|_| TensorError::Alloc { what, bytes })?;
    advise_range(lines.as_mut_ptr() as usize, bytes);
    lines.resize(len, Line::default());
    Ok(lines)
}

/// Below this many floats [`filled_lines`] writes on the calling thread alone: spawning
/// threads costs more than the writes of a small buffer.
const PARALLEL_FILL_MIN_FLOATS: usize = 1 << 18;

/// `rows * cols` floats (padded with zeros to whole cache lines) written row by row by
/// `fill(row, values)`, each element written once, on up to `threads` threads, each taking
/// a contiguous block of rows. A large buffer is reserved uninitialised and advised huge
/// pages first (as in [`zeroed_lines`]), so the first write of each 2 MiB page maps it,
/// and the kernel's clearing of those pages is shared by the threads too.
fn filled_lines(
    rows: usize,
    cols: usize,
    threads: usize,
    what: &'static str,
    fill: &(dyn Fn(usize, &mut [f32]) + Sync),
) -> Result<Vec<Line>, TensorError> {
    let len = rows.checked_mul(cols).ok_or(TensorError::Alloc {
        what,
        bytes: usize::MAX,
    })?;
    let n_lines = len.div_ceil(16);
    let bytes = n_lines.saturating_mul(std::mem::size_of::<Line>());
    let mut lines: Vec<Line> = Vec::new();
    lines
        .try_reserve_exact(n_lines)
        .map_err(|_| TensorError::Alloc { what, bytes })?;
    advise_range(lines.as_mut_ptr() as usize, bytes);
    let spare = &mut lines.spare_capacity_mut()[..n_lines];
    // SAFETY: a `Line` is `repr(C)` around `[f32; 16]`, so `n_lines` uninitialised lines
    // are exactly `16 n_lines` uninitialised, suitably aligned floats of the same
    // allocation; the slice borrows `lines` mutably for as long as it lives.
    let floats: &mut [std::mem::MaybeUninit<f32>] =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), n_lines * 16) };
    let (body, tail) = floats.split_at_mut(len);
    for x in tail {
        x.write(0.0);
    }
    let fill_rows = |first: usize, block: &mut [std::mem::MaybeUninit<f32>]| {
        if cols == 0 {
            return;
        }
        for (i, row) in block.chunks_exact_mut(cols).enumerate() {
            for x in row.iter_mut() {
                x.write(0.0);
            }
            // SAFETY: every float of `row` was written just above, so it is initialised,
            // and `row` is borrowed mutably here alone.
            let row: &mut [f32] =
                unsafe { std::slice::from_raw_parts_mut(row.as_mut_ptr().cast(), row.len()) };
            fill(first + i, row);
        }
    };
    let threads = if len < PARALLEL_FILL_MIN_FLOATS {
        1
    } else {
        threads.clamp(1, rows.max(1))
    };
    if threads == 1 {
        fill_rows(0, body);
    } else {
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            let mut rest = body;
            let mut first = 0;
            let mut mine = None;
            while !rest.is_empty() {
                let take = per.min(rows - first);
                let (block, after) = rest.split_at_mut(take * cols);
                rest = after;
                if mine.is_none() {
                    // The calling thread takes the first block itself.
                    mine = Some((first, block));
                } else {
                    let fill_rows = &fill_rows;
                    s.spawn(move || fill_rows(first, block));
                }
                first += take;
            }
            if let Some((first, block)) = mine {
                fill_rows(first, block);
            }
        });
    }
    // SAFETY: the capacity is `n_lines` lines, and every float of them was written above
    // (the body row by row, the padding after it with zeros).
    unsafe { lines.set_len(n_lines) };
    Ok(lines)
}

/// A growable 64-byte aligned buffer of f32, used for matrices and packing scratch.
#[derive(Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl Clone for AlignedVec {
    /// A copy in a fresh allocation (huge pages advised when it is large, like
    /// [`AlignedVec::zeros`]).
    fn clone(&self) -> Self {
        let mut lines: Vec<Line> = zeroed_lines(self.lines.len(), "AlignedVec::clone")
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(std::alloc::Layout::new::<Line>()));
        lines.copy_from_slice(&self.lines);
        Self {
            lines,
            len: self.len,
        }
    }
}

impl AlignedVec {
    /// A buffer of `len` zeros.
    ///
    /// # Panics
    /// Aborts like `vec!` when the memory cannot be allocated; see [`AlignedVec::try_zeros`].
    pub fn zeros(len: usize) -> Self {
        match Self::try_zeros(len) {
            Ok(v) => v,
            Err(_) => std::alloc::handle_alloc_error(
                std::alloc::Layout::array::<Line>(len.div_ceil(16))
                    .unwrap_or(std::alloc::Layout::new::<Line>()),
            ),
        }
    }

    /// A buffer of `len` zeros, or an error when the memory cannot be allocated. Large
    /// buffers are advised huge pages ([`advise_huge_pages`]) before the zeros are written,
    /// so that their first touch maps 2 MiB at once.
    pub fn try_zeros(len: usize) -> Result<Self, TensorError> {
        let lines = zeroed_lines(len.div_ceil(16), "AlignedVec::try_zeros")?;
        Ok(Self { lines, len })
    }

    /// Number of floats in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no floats.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the buffer at least `len` floats long, keeping its capacity (never shrinks).
    /// New floats are zero; existing ones are kept.
    pub fn ensure_len(&mut self, len: usize) {
        if len > self.len {
            let lines = len.div_ceil(16);
            if lines > self.lines.len() {
                self.lines.resize(lines, Line::default());
            }
            self.len = len;
        }
    }

    /// The floats as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice::<Line, f32>(&self.lines)[..self.len]
    }

    /// The floats as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut::<Line, f32>(&mut self.lines)[..self.len]
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// An owned row-major f32 matrix with a leading dimension and 64-byte aligned storage.
#[derive(Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    ld: usize,
    buf: AlignedVec,
}

impl Matrix {
    /// A `rows x cols` matrix of zeros whose leading dimension is `cols`.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self::zeros_with_ld(rows, cols, cols)
    }

    /// A `rows x cols` matrix of zeros, or an error when its size overflows or the memory
    /// cannot be allocated (for sizes that come from outside, like an embedding table's
    /// vocabulary).
    pub fn try_zeros(rows: usize, cols: usize) -> Result<Self, TensorError> {
        let len = rows.checked_mul(cols).ok_or(TensorError::Alloc {
            what: "Matrix::try_zeros",
            bytes: usize::MAX,
        })?;
        Ok(Self {
            rows,
            cols,
            ld: cols,
            buf: AlignedVec::try_zeros(len)?,
        })
    }

    /// A `rows x cols` matrix whose row `i` is written by `fill(i, row)`, each element
    /// once (no zeros first), the rows shared out in contiguous blocks over up to
    /// `threads` threads when the matrix is large. `fill` must write a row from its index
    /// alone, so the result does not depend on `threads`. Large matrices get huge pages,
    /// as [`Matrix::try_zeros`] does. An error when the size overflows or the memory cannot
    /// be allocated.
    pub fn try_from_rows(
        rows: usize,
        cols: usize,
        threads: usize,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Result<Self, TensorError> {
        let lines = filled_lines(rows, cols, threads, "Matrix::try_from_rows", &fill)?;
        Ok(Self {
            rows,
            cols,
            ld: cols,
            buf: AlignedVec {
                lines,
                len: rows * cols,
            },
        })
    }

    /// A `rows x cols` matrix of zeros whose rows are `ld >= cols` floats apart.
    ///
    /// # Panics
    /// If `ld < cols`.
    pub fn zeros_with_ld(rows: usize, cols: usize, ld: usize) -> Self {
        assert!(
            ld >= cols,
            "leading dimension {ld} is smaller than {cols} columns"
        );
        Self {
            rows,
            cols,
            ld,
            buf: AlignedVec::zeros(rows * ld),
        }
    }

    /// A matrix whose element `(i, j)` is `f(i, j)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f32) -> Self {
        let mut m = Self::zeros(rows, cols);
        for i in 0..rows {
            for (j, x) in m.row_mut(i).iter_mut().enumerate() {
                *x = f(i, j);
            }
        }
        m
    }

    /// A matrix copied from a row-major slice of exactly `rows * cols` floats.
    pub fn from_slice(rows: usize, cols: usize, data: &[f32]) -> Result<Self, TensorError> {
        if data.len() != rows * cols {
            return Err(TensorError::Layout {
                what: "Matrix::from_slice",
                detail: format!(
                    "{rows}x{cols} needs {} floats, got {}",
                    rows * cols,
                    data.len()
                ),
            });
        }
        Ok(Self::from_fn(rows, cols, |i, j| data[i * cols + j]))
    }

    /// The identity matrix of size `n`.
    pub fn identity(n: usize) -> Self {
        Self::from_fn(n, n, |i, j| if i == j { 1.0 } else { 0.0 })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Distance in floats between the starts of consecutive rows.
    pub fn ld(&self) -> usize {
        self.ld
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Row `i` (its `cols` floats, without padding).
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.buf.as_slice()[i * self.ld..i * self.ld + self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let ld = self.ld;
        &mut self.buf.as_mut_slice()[i * ld..i * ld + self.cols]
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.row(i)[j]
    }

    /// Sets element `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, x: f32) {
        self.row_mut(i)[j] = x;
    }

    /// The whole storage, padding included (`rows * ld` floats).
    pub fn as_slice(&self) -> &[f32] {
        self.buf.as_slice()
    }

    /// The whole storage, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        self.buf.as_mut_slice()
    }

    /// Sets every element (padding included) to `x`.
    pub fn fill(&mut self, x: f32) {
        self.buf.as_mut_slice().fill(x);
    }

    /// The elements row by row, without padding.
    pub fn to_vec(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|i| self.row(i).iter().copied())
            .collect()
    }

    /// A borrowed view of the whole matrix.
    pub fn view(&self) -> MatRef<'_> {
        MatRef {
            data: self.buf.as_slice(),
            rows: self.rows,
            cols: self.cols,
            rs: self.ld,
            cs: 1,
        }
    }

    /// A mutable borrowed view of the whole matrix.
    pub fn view_mut(&mut self) -> MatMut<'_> {
        MatMut {
            rows: self.rows,
            cols: self.cols,
            rs: self.ld,
            cs: 1,
            data: self.buf.as_mut_slice(),
        }
    }
}

impl PartialEq for Matrix {
    /// Same shape and same elements (the leading dimension and padding do not matter).
    fn eq(&self, other: &Self) -> bool {
        self.shape() == other.shape() && (0..self.rows).all(|i| self.row(i) == other.row(i))
    }
}

impl Default for Matrix {
    /// The empty `0 x 0` matrix.
    fn default() -> Self {
        Self::zeros(0, 0)
    }
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matrix {}x{} (ld {}) ", self.rows, self.cols, self.ld)?;
        f.debug_list()
            .entries((0..self.rows).map(|i| self.row(i)))
            .finish()
    }
}

/// Index of the last element a `rows x cols` view with strides `rs, cs` touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

/// True when no two elements of a `rows x cols` view with strides `rs, cs` share a slot.
fn non_overlapping(rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows <= 1 && cols <= 1 {
        return true;
    }
    if rows <= 1 {
        return cs >= 1;
    }
    if cols <= 1 {
        return rs >= 1;
    }
    (cs >= 1 && rs >= cols * cs) || (rs >= 1 && cs >= rows * rs)
}

fn check_bounds(
    what: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<(), TensorError> {
    match extent(rows, cols, rs, cs) {
        Some(end) if end <= len => Ok(()),
        _ => Err(TensorError::Layout {
            what,
            detail: format!("{rows}x{cols} with strides ({rs}, {cs}) does not fit in {len} floats"),
        }),
    }
}

/// A borrowed, read-only matrix view: a slice, a shape and row/column strides.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major view of `rows x cols` with leading dimension `ld` over `data`.
    pub fn from_slice(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        ld: usize,
    ) -> Result<Self, TensorError> {
        if ld < cols && rows > 1 {
            return Err(TensorError::Layout {
                what: "MatRef::from_slice",
                detail: format!("leading dimension {ld} is smaller than {cols} columns"),
            });
        }
        Self::from_strided(data, rows, cols, ld, 1)
    }

    /// A view with arbitrary strides: element `(i, j)` is `data[i * rs + j * cs]`.
    pub fn from_strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, TensorError> {
        check_bounds("MatRef::from_strided", data.len(), rows, cols, rs, cs)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Distance in floats between consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.rs
    }

    /// Distance in floats between consecutive columns.
    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// The underlying slice (starting at element `(0, 0)`).
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is out of the view.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        assert!(
            i < self.rows && j < self.cols,
            "({i}, {j}) outside {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.rs + j * self.cs]
    }

    /// The transposed view (no copy: the strides swap).
    pub fn t(self) -> MatRef<'a> {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The `rows x cols` sub-matrix starting at `(r0, c0)` (no copy).
    ///
    /// # Panics
    /// If the block does not fit in the view.
    pub fn sub(self, r0: usize, c0: usize, rows: usize, cols: usize) -> MatRef<'a> {
        assert!(
            r0 + rows <= self.rows && c0 + cols <= self.cols,
            "block ({r0}, {c0}) {rows}x{cols} outside {}x{}",
            self.rows,
            self.cols
        );
        let start = if rows == 0 || cols == 0 {
            0
        } else {
            r0 * self.rs + c0 * self.cs
        };
        MatRef {
            data: &self.data[start..],
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// True when rows are contiguous (`cs == 1`), the layout the fast paths expect.
    pub fn is_row_major(&self) -> bool {
        self.cs == 1 || self.cols <= 1
    }

    /// Row `i` as a slice.
    ///
    /// # Panics
    /// If the view is not row-major or `i` is out of range.
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert!(
            self.is_row_major() && i < self.rows,
            "row {i} of a non row-major view"
        );
        &self.data[i * self.rs..i * self.rs + self.cols]
    }

    /// Copies the view into a new, dense row-major [`Matrix`].
    pub fn to_matrix(&self) -> Matrix {
        Matrix::from_fn(self.rows, self.cols, |i, j| self.get(i, j))
    }
}

impl std::fmt::Debug for MatRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MatRef {}x{} strides ({}, {})",
            self.rows, self.cols, self.rs, self.cs
        )
    }
}

/// A borrowed, mutable matrix view; its strides never make two elements share a slot.
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A mutable row-major view of `rows x cols` with leading dimension `ld` over `data`.
    pub fn from_slice(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        ld: usize,
    ) -> Result<Self, TensorError> {
        Self::from_strided(data, rows, cols, ld, 1)
    }

    /// A mutable view with arbitrary non-overlapping strides.
    pub fn from_strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, TensorError> {
        check_bounds("MatMut::from_strided", data.len(), rows, cols, rs, cs)?;
        if !non_overlapping(rows, cols, rs, cs) {
            return Err(TensorError::Layout {
                what: "MatMut::from_strided",
                detail: format!("strides ({rs}, {cs}) make elements of {rows}x{cols} overlap"),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Distance in floats between consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.rs
    }

    /// Distance in floats between consecutive columns.
    pub fn col_stride(&self) -> usize {
        self.cs
    }

    /// Element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is out of the view.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        assert!(
            i < self.rows && j < self.cols,
            "({i}, {j}) outside {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.rs + j * self.cs]
    }

    /// Sets element `(i, j)`.
    ///
    /// # Panics
    /// If `(i, j)` is out of the view.
    pub fn set(&mut self, i: usize, j: usize, x: f32) {
        assert!(
            i < self.rows && j < self.cols,
            "({i}, {j}) outside {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.rs + j * self.cs] = x;
    }

    /// A read-only view of the same elements.
    pub fn rb(&self) -> MatRef<'_> {
        MatRef {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// A shorter-lived mutable view of the same elements.
    pub fn rb_mut(&mut self) -> MatMut<'_> {
        MatMut {
            data: self.data,
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// The transposed mutable view (no copy).
    pub fn t(self) -> MatMut<'a> {
        MatMut {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// The mutable `rows x cols` sub-matrix starting at `(r0, c0)` (no copy).
    ///
    /// # Panics
    /// If the block does not fit in the view.
    pub fn sub(self, r0: usize, c0: usize, rows: usize, cols: usize) -> MatMut<'a> {
        assert!(
            r0 + rows <= self.rows && c0 + cols <= self.cols,
            "block ({r0}, {c0}) {rows}x{cols} outside {}x{}",
            self.rows,
            self.cols
        );
        let start = if rows == 0 || cols == 0 {
            0
        } else {
            r0 * self.rs + c0 * self.cs
        };
        MatMut {
            data: &mut self.data[start..],
            rows,
            cols,
            rs: self.rs,
            cs: self.cs,
        }
    }

    /// Splits into rows `0..r` and rows `r..`, two views that share no element.
    ///
    /// # Panics
    /// If `r > rows`, or if rows interleave in memory (`row_stride < cols * col_stride`).
    pub fn split_rows_at(self, r: usize) -> (MatMut<'a>, MatMut<'a>) {
        assert!(r <= self.rows, "split at row {r} of {}", self.rows);
        assert!(
            self.rows <= 1 || self.cols == 0 || self.rs >= self.cols * self.cs,
            "rows interleave: strides ({}, {}) for {} columns",
            self.rs,
            self.cs,
            self.cols
        );
        let at = (r * self.rs).min(self.data.len());
        let (top, bottom) = self.data.split_at_mut(at);
        let (cols, rs, cs) = (self.cols, self.rs, self.cs);
        (
            MatMut {
                data: top,
                rows: r,
                cols,
                rs,
                cs,
            },
            MatMut {
                data: bottom,
                rows: self.rows - r,
                cols,
                rs,
                cs,
            },
        )
    }

    /// The underlying mutable slice (starting at element `(0, 0)`).
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }

    /// True when rows are contiguous (`cs == 1`).
    pub fn is_row_major(&self) -> bool {
        self.cs == 1 || self.cols <= 1
    }

    /// Row `i` as a mutable slice.
    ///
    /// # Panics
    /// If the view is not row-major or `i` is out of range.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(
            self.is_row_major() && i < self.rows,
            "row {i} of a non row-major view"
        );
        &mut self.data[i * self.rs..i * self.rs + self.cols]
    }
}

impl std::fmt::Debug for MatMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MatMut {}x{} strides ({}, {})",
            self.rows, self.cols, self.rs, self.cs
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_64_byte_aligned() {
        for n in [1, 7, 16, 100] {
            let m = Matrix::zeros(n, n + 3);
            assert_eq!(m.as_slice().as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn rows_filled_on_any_number_of_threads_are_the_rows_drawn_in_order() {
        let value = |i: usize, j: usize| ((i * 7919 + j * 31) % 1009) as f32 - 500.0;
        // Small (one thread whatever is asked), and above the parallel threshold with a
        // row count that does not divide evenly and a width that is not a whole line.
        for (rows, cols) in [(0, 0), (0, 5), (3, 0), (1, 1), (17, 3), (10_007, 33)] {
            let want = Matrix::from_fn(rows, cols, value);
            for threads in [0, 1, 2, 3, 8] {
                let got = Matrix::try_from_rows(rows, cols, threads, |i, row| {
                    for (j, x) in row.iter_mut().enumerate() {
                        *x = value(i, j);
                    }
                })
                .unwrap();
                assert_eq!(got.shape(), (rows, cols));
                assert_eq!(
                    got.as_slice(),
                    want.as_slice(),
                    "{rows}x{cols}, {threads} threads"
                );
                assert_eq!(got.as_slice().as_ptr() as usize % 64, 0);
                // The padding of the last cache line is zero, as in a zeroed matrix.
                let padded = bytemuck::cast_slice::<Line, f32>(&got.buf.lines);
                assert!(padded[rows * cols..].iter().all(|&x| x == 0.0));
            }
        }
        assert!(Matrix::try_from_rows(usize::MAX, 2, 2, |_, _| {}).is_err());
    }

    #[test]
    fn views_index_like_the_matrix() {
        let m = Matrix::from_fn(3, 4, |i, j| (10 * i + j) as f32);
        let v = m.view();
        assert_eq!(v.get(2, 3), 23.0);
        assert_eq!(v.t().get(3, 2), 23.0);
        assert_eq!(v.t().shape(), (4, 3));
        let s = v.sub(1, 1, 2, 2);
        assert_eq!((s.get(0, 0), s.get(1, 1)), (11.0, 22.0));
        assert_eq!(v.t().sub(1, 0, 2, 3).get(1, 2), 22.0);
        assert_eq!(s.to_matrix().to_vec(), vec![11.0, 12.0, 21.0, 22.0]);
    }

    #[test]
    fn leading_dimension_pads_rows() {
        let mut m = Matrix::zeros_with_ld(2, 3, 16);
        m.set(1, 2, 5.0);
        assert_eq!(m.as_slice()[16 + 2], 5.0);
        assert_eq!(m.row(1), &[0.0, 0.0, 5.0]);
    }

    #[test]
    fn bad_layouts_are_errors() {
        let data = [0.0f32; 10];
        assert!(MatRef::from_slice(&data, 3, 4, 4).is_err());
        assert!(MatRef::from_slice(&data, 2, 4, 3).is_err());
        assert!(MatRef::from_slice(&data, 0, 4, 4).is_ok());
        let mut data = [0.0f32; 10];
        assert!(MatMut::from_strided(&mut data, 2, 2, 1, 1).is_err());
        assert!(MatMut::from_strided(&mut data, 2, 2, 1, 2).is_ok());
        assert!(Matrix::from_slice(2, 2, &[1.0; 3]).is_err());
    }

    #[test]
    fn aligned_vec_grows_and_keeps_contents() {
        let mut v = AlignedVec::zeros(3);
        v.as_mut_slice()[2] = 1.5;
        v.ensure_len(40);
        assert_eq!(v.len(), 40);
        assert_eq!(v.as_slice()[2], 1.5);
        assert_eq!(v.as_slice().as_ptr() as usize % 64, 0);
    }

    #[test]
    fn large_buffers_are_aligned_zeros_and_clone_exactly() {
        // Past the huge-page threshold the zeros are written after the advice: both paths
        // must give the same thing.
        for len in [HUGE_PAGE_MIN_BYTES / 4 - 1, HUGE_PAGE_MIN_BYTES / 4 + 17] {
            let mut v = AlignedVec::zeros(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_slice().as_ptr() as usize % 64, 0);
            assert!(v.as_slice().iter().all(|&x| x == 0.0));
            v.as_mut_slice()[len - 1] = 2.5;
            let c = v.clone();
            assert_eq!(c.len(), len);
            assert_eq!(c.as_slice()[len - 1], 2.5);
            assert!(c.as_slice()[..len - 1].iter().all(|&x| x == 0.0));
        }
        let m = Matrix::try_zeros(HUGE_PAGE_MIN_BYTES / 64 + 3, 16).expect("a few MB");
        assert!(m.as_slice().iter().all(|&x| x == 0.0));
    }
}
