//! ROC AUC: the probability that a random positive scores above a random negative, ties
//! counted as one half.
//!
//! ```text
//! AUC = ( #{(p, n): s_p > s_n} + 1/2 #{(p, n): s_p = s_n} ) / (P N)
//! ```
//!
//! Computed exactly in O(n log n): sort by score, walk the distinct scores upwards with the
//! number of negatives seen so far; each block of equal scores with `p` positives and `n`
//! negatives adds `p * negatives_below + p * n / 2`. Counts are integers, so the only
//! rounding is the final division. A [`ScoreHistogram`] (distinct scores with their
//! positive and negative counts) can be built per chunk and merged, which gives the same
//! integers, hence the same AUC, whatever the chunking: that is how [`auc_par`] works.

use rayon::prelude::*;

use crate::error::{MetricsError, Result, check_labels, check_scores, same_len};

/// Sortable key of an f32 score: the total order of `f32::total_cmp` as an integer, with
/// `-0.0` folded onto `0.0` so that they tie.
pub(crate) fn score_key(s: f32) -> u32 {
    let s = if s == 0.0 { 0.0 } else { s };
    let b = s.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Distinct scores (as sortable keys, ascending) with their positive and negative counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreHistogram {
    entries: Vec<(u32, u64, u64)>,
}

impl ScoreHistogram {
    /// The histogram of one chunk of scores and 0/1 labels (validated by the caller).
    fn from_pairs(scores: &[f32], labels: &[f32]) -> Self {
        let mut keyed: Vec<(u32, bool)> = scores
            .iter()
            .zip(labels)
            .map(|(&s, &y)| (score_key(s), y == 1.0))
            .collect();
        keyed.sort_unstable_by_key(|&(k, _)| k);
        let mut entries: Vec<(u32, u64, u64)> = Vec::new();
        for (k, pos) in keyed {
            match entries.last_mut() {
                Some(e) if e.0 == k => {
                    if pos {
                        e.1 += 1
                    } else {
                        e.2 += 1
                    }
                }
                _ => entries.push((k, pos as u64, !pos as u64)),
            }
        }
        Self { entries }
    }

    /// Merges two histograms (a sorted merge summing the counts of equal scores).
    pub fn merge(self, other: Self) -> Self {
        let (a, b) = (self.entries, other.entries);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            if j == b.len() || (i < a.len() && a[i].0 < b[j].0) {
                out.push(a[i]);
                i += 1;
            } else if i == a.len() || b[j].0 < a[i].0 {
                out.push(b[j]);
                j += 1;
            } else {
                out.push((a[i].0, a[i].1 + b[j].1, a[i].2 + b[j].2));
                i += 1;
                j += 1;
            }
        }
        Self { entries: out }
    }

    /// `(positives, negatives)`.
    pub fn counts(&self) -> (u64, u64) {
        self.entries
            .iter()
            .fold((0, 0), |(p, n), e| (p + e.1, n + e.2))
    }

    /// The AUC of the histogram; an error when a class is missing.
    pub fn auc(&self) -> Result<f64> {
        let (p, n) = self.counts();
        if p == 0 || n == 0 {
            return Err(MetricsError::SingleClass {
                what: "auc",
                positives: p,
                negatives: n,
            });
        }
        // Twice the numerator, so ties stay integers: 2 * below * pos + pos * neg.
        let (mut below, mut twice) = (0u128, 0u128);
        for &(_, pos, neg) in &self.entries {
            twice += 2 * below * pos as u128 + pos as u128 * neg as u128;
            below += neg as u128;
        }
        Ok(twice as f64 / (2.0 * p as f64 * n as f64))
    }
}

fn validate(scores: &[f32], labels: &[f32]) -> Result<()> {
    same_len("labels", scores.len(), labels.len())?;
    check_labels(labels)?;
    check_scores("score", scores)
}

/// AUC of `scores` against 0/1 `labels`.
///
/// Errors: lengths differ, a label is not 0 or 1, a score is NaN, or only one class is
/// present.
pub fn auc(scores: &[f32], labels: &[f32]) -> Result<f64> {
    validate(scores, labels)?;
    auc_unchecked(scores, labels)
}

/// [`auc`] for inputs already validated.
pub(crate) fn auc_unchecked(scores: &[f32], labels: &[f32]) -> Result<f64> {
    ScoreHistogram::from_pairs(scores, labels).auc()
}

/// [`auc`] computed over rayon chunks of `chunk` rows, merged exactly: the same value as
/// the serial computation for any chunk size.
pub fn auc_par(scores: &[f32], labels: &[f32], chunk: usize) -> Result<f64> {
    validate(scores, labels)?;
    let chunk = chunk.max(1);
    scores
        .par_chunks(chunk)
        .zip(labels.par_chunks(chunk))
        .map(|(s, y)| ScoreHistogram::from_pairs(s, y))
        .reduce(ScoreHistogram::default, ScoreHistogram::merge)
        .auc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_floats_and_tie_zeros() {
        let v = [
            f32::NEG_INFINITY,
            -3.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
        ];
        for w in v.windows(2) {
            assert!(score_key(w[0]) <= score_key(w[1]), "{w:?}");
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
    }
}
