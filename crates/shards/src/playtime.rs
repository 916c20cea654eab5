//! A synthetic regression dataset shaped like video play time, drawn from a known
//! generating function, so that the best achievable mean squared error is known.
//!
//! Sessions of 10 to 40 rows share a user and a scenario; each row shows an item (skewed
//! popularity) whose category, author and duration class are fixed functions of the item.
//! The play time of a row is
//!
//! ```text
//! eta = ln 30 + 0.5 w_item + 0.4 w_user + 0.3 w_category + 0.3 w_duration + 0.2 w_scenario
//!       + 0.5 <p_user, q_item>                    (rank 4; every w, p, q standard normal)
//! m   = 30 exp(clamp(eta - ln 30, -3, 3))         the conditional mean, 1.5 s to 600 s
//! y   = m G,   G = (E_1 + E_2) / 2,   E_j ~ Exponential(1)
//! ```
//!
//! so `E[y | x] = m` and `Var(y | x) = m^2 / 2` (G is Gamma with shape 2 and mean 1: a
//! skewed, heavy right tail, as play times have). No predictor does better on average than
//! `m` itself, whose expected squared error is the *floor* `E[m^2] / 2`;
//! [`PlayTimeInfo`] reports it for the rows drawn (as `mean(m^2) / 2`), beside the squared
//! error that `m` actually makes on them and the variance of `y` (the error of the best
//! constant). A model's MSE on a large evaluation set of the same world approaches the
//! floor from above.
//!
//! The target column is `play_time`, a continuous target ([`crate::Schema::targets`]);
//! like [`crate::synth`], the world has a seed of its own (`teacher_seed`), so sets drawn
//! with different sampling seeds are a training and an evaluation set of the same world.

use std::path::Path;

use crate::error::{Result, ShardError};
use crate::schema::{DenseSpec, FORMAT_VERSION, Schema, SingleField};
use crate::synth::{gauss, mix, unit};
use crate::writer::{DatasetInfo, Row, ShardWriter};

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayTimeConfig {
    /// Rows.
    pub rows: usize,
    /// Seed of the sampling (sessions, items, the noise).
    pub seed: u64,
    /// Seed of the world (item attributes and every weight).
    pub teacher_seed: u64,
    /// Cap on the user and item vocabularies.
    pub max_vocab: u32,
    /// Rows per shard file.
    pub rows_per_shard: usize,
}

impl Default for PlayTimeConfig {
    fn default() -> Self {
        Self {
            rows: 200_000,
            seed: 1,
            teacher_seed: 2024,
            max_vocab: 2_000,
            rows_per_shard: 65_536,
        }
    }
}

/// What [`generate`] wrote, with the figures a model's error is judged against.
#[derive(Debug, Clone)]
pub struct PlayTimeInfo {
    /// The dataset.
    pub info: DatasetInfo,
    /// `mean(m^2) / 2` over the rows: the expected squared error of the best predictor.
    pub floor_mse: f64,
    /// `mean((y - m)^2)`: the squared error the best predictor made on these rows.
    pub oracle_mse: f64,
    /// `mean(|y - m|)`: the absolute error of the conditional mean on these rows.
    pub oracle_mae: f64,
    /// The variance of `y`: the squared error of the best constant, the mean.
    pub target_variance: f64,
    /// The mean of `y`.
    pub target_mean: f64,
}

/// The name of the target column.
pub const TARGET: &str = "play_time";

/// The single-valued fields and their vocabulary sizes under `max_vocab`.
fn fields(max_vocab: u32) -> [(&'static str, u32); 6] {
    let v = max_vocab.max(8);
    [
        ("user", v),
        ("item", v),
        ("category", 64.min(v)),
        ("author", (v / 4).max(4)),
        ("duration", 5),
        ("scenario", 4),
    ]
}

/// The schema of a play-time dataset.
pub fn schema(config: &PlayTimeConfig) -> Schema {
    Schema {
        format_version: FORMAT_VERSION,
        tasks: vec![TARGET.into()],
        single: fields(config.max_vocab)
            .iter()
            .map(|&(name, vocab)| SingleField {
                name: name.into(),
                vocab,
            })
            .collect(),
        multi: Vec::new(),
        dense: DenseSpec::default(),
        group: Some("session".into()),
        weight: false,
        soft_labels: false,
        targets: vec![TARGET.into()],
        item: Some("item".into()),
        encodings: Vec::new(),
    }
}

/// One row: its ids and its conditional mean `m`.
struct Draw {
    ids: [u32; 6],
    mean: f64,
}

/// The world: ids and weights from `teacher_seed`.
struct World {
    seed: u64,
    vocab: [u32; 6],
}

impl World {
    fn w(&self, salt: u64, id: u32) -> f64 {
        gauss(mix(&[self.seed, salt, id as u64]))
    }

    fn draw(&self, sample_seed: u64, session: u64, index: u64) -> Draw {
        let v = &self.vocab;
        let s = self.seed;
        let u = unit(mix(&[sample_seed, 1, session]));
        let user = ((u * u) * v[0] as f64) as u32;
        let scenario = (mix(&[sample_seed, 2, session]) % v[5] as u64) as u32;
        let r = unit(mix(&[sample_seed, 3, index]));
        let item = ((r * r * r) * v[1] as f64) as u32;
        let of_item = |salt: u64, n: u32| (mix(&[s, salt, item as u64]) % n as u64) as u32;
        let (category, author, duration) =
            (of_item(10, v[2]), of_item(11, v[3]), of_item(12, v[4]));
        let interaction: f64 = (0..4u64)
            .map(|k| self.w(100 + k, user) * self.w(200 + k, item))
            .sum();
        let eta = 0.5 * self.w(1, item)
            + 0.4 * self.w(2, user)
            + 0.3 * self.w(3, category)
            + 0.3 * self.w(4, duration)
            + 0.2 * self.w(5, scenario)
            + 0.5 * interaction;
        Draw {
            ids: [user, item, category, author, duration, scenario],
            mean: 30.0 * eta.clamp(-3.0, 3.0).exp(),
        }
    }
}

/// Writes a play-time dataset to `out` (a new or empty directory) and reports its floor.
pub fn generate(config: &PlayTimeConfig, out: &Path) -> Result<PlayTimeInfo> {
    if config.max_vocab < 8 {
        return Err(ShardError::Schema("max_vocab must be at least 8".into()));
    }
    let schema = schema(config);
    let mut vocab = [0u32; 6];
    for (v, f) in vocab.iter_mut().zip(&schema.single) {
        *v = f.vocab;
    }
    let world = World {
        seed: config.teacher_seed,
        vocab,
    };
    let mut w = ShardWriter::create(out, schema, config.rows_per_shard, false)?;
    let (mut m2, mut sq, mut abs, mut sum_y, mut sum_y2) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let (mut row, mut session) = (0usize, 0u64);
    while row < config.rows {
        let len = 10 + (mix(&[config.seed, 99, session]) % 31) as usize;
        for _ in 0..len.min(config.rows - row) {
            let d = world.draw(config.seed, session, row as u64);
            let e = |j: u64| -(1.0 - unit(mix(&[config.seed, 500 + j, row as u64]))).ln();
            let y = (d.mean * 0.5 * (e(0) + e(1))) as f32;
            let yf = y as f64;
            m2 += d.mean * d.mean;
            sq += (yf - d.mean) * (yf - d.mean);
            abs += (yf - d.mean).abs();
            sum_y += yf;
            sum_y2 += yf * yf;
            w.push(&Row {
                labels: &[y],
                single: &d.ids,
                bags: &[],
                dense: &[],
                group: session,
                weight: 1.0,
            })?;
            row += 1;
        }
        session += 1;
    }
    let info = w.finish()?;
    let n = config.rows.max(1) as f64;
    let mean = sum_y / n;
    Ok(PlayTimeInfo {
        info,
        floor_mse: m2 / n / 2.0,
        oracle_mse: sq / n,
        oracle_mae: abs / n,
        target_variance: (sum_y2 / n - mean * mean).max(0.0),
        target_mean: mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    #[test]
    fn the_floor_is_what_the_conditional_mean_achieves() {
        let dir = std::env::temp_dir().join(format!("playtime-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = PlayTimeConfig {
            rows: 40_000,
            max_vocab: 500,
            rows_per_shard: 10_000,
            ..PlayTimeConfig::default()
        };
        let info = generate(&cfg, &dir).unwrap();
        assert_eq!(info.info.rows, 40_000);
        // The conditional mean's realised error agrees with the floor (sampling error of
        // a heavy-tailed mean over 40k rows: a few percent), and beats the constant by far.
        let ratio = info.oracle_mse / info.floor_mse;
        assert!((0.9..1.1).contains(&ratio), "oracle / floor = {ratio}");
        assert!(info.target_variance > 1.3 * info.floor_mse, "{info:?}");
        // Stored as a continuous target; the same seed writes the same bytes.
        let ds = Dataset::open(&dir).unwrap();
        assert_eq!(ds.schema().targets, vec![TARGET.to_string()]);
        let again = dir.with_extension("again");
        let _ = std::fs::remove_dir_all(&again);
        let info2 = generate(&cfg, &again).unwrap();
        assert_eq!(info.floor_mse, info2.floor_mse);
        let shard = crate::shard_name(0);
        assert_eq!(
            std::fs::read(dir.join(&shard)).unwrap(),
            std::fs::read(again.join(&shard)).unwrap()
        );
        for d in [dir, again] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
