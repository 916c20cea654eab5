//! The one error type of the `tensor` crate.

/// What went wrong in a tensor operation, with the operation's name and the shapes involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// Operand shapes do not agree (e.g. `A` is `m x k` but `B` is `k' x n` with `k != k'`).
    #[error("{op}: shape mismatch: {detail}")]
    Shape {
        /// The operation that was called.
        op: &'static str,
        /// The shapes and the rule they broke.
        detail: String,
    },
    /// A view's shape and strides do not fit its slice, or would alias.
    #[error("{what}: bad layout: {detail}")]
    Layout {
        /// The constructor or operation that rejected the layout.
        what: &'static str,
        /// The shape, strides and length involved.
        detail: String,
    },
    /// `RESFLOW_KERNEL` (or a caller) named a tier that does not exist.
    #[error("unknown kernel tier {0:?}: expected one of portable, avx2, avx512")]
    UnknownTier(String),
    /// A kernel tier was requested that this CPU cannot run.
    #[error("kernel tier {tier} is not supported by this CPU (it supports: {supported})")]
    UnsupportedTier {
        /// The requested tier.
        tier: &'static str,
        /// The tiers this CPU supports, comma-separated.
        supported: String,
    },
    /// The memory for a buffer could not be allocated (or its size overflows).
    #[error("{what}: cannot allocate {bytes} bytes")]
    Alloc {
        /// The constructor that asked.
        what: &'static str,
        /// The size asked for.
        bytes: usize,
    },
    /// An input held NaN or an infinity where only finite numbers are accepted.
    #[error("{op}: {what} ({row}, {col}) is not finite")]
    NonFinite {
        /// The operation that refused it.
        op: &'static str,
        /// Which operand (e.g. `weight`, `activation`).
        what: &'static str,
        /// Row of the element.
        row: usize,
        /// Column of the element.
        col: usize,
    },
    /// The operands' magnitudes could make the result leave the finite f32 range.
    #[error("{op}: result out of range: {detail}")]
    Overflow {
        /// The operation that refused the operands.
        op: &'static str,
        /// The magnitudes involved and the limit.
        detail: String,
    },
}
