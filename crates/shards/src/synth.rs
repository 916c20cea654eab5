//! The built-in synthetic dataset: a conversion funnel in the Ali-CCP layout, generated
//! from a hidden "teacher" so that models have something real to learn.
//!
//! Sessions of 20 to 100 impressions share a user and a scenario (fields 101, 121-129 and
//! 301 are constant within a session; the session is the group id). Each impression shows
//! an item (field 205, drawn with a skewed popularity) whose category, shop and brand
//! (206, 207, 216) and tag list (bag 210) are fixed functions of the item; the cross fields
//! (508, 509, 702 and bag 853) are functions of the user and the item.
//!
//! The teacher scores an impression with per-id weights of a few fields plus a low-rank
//! user x item interaction (rank 4); the funnel is then sampled task by task:
//!
//! ```text
//! click       ~ Bernoulli(sigmoid(b_c + item + user + category + cross + <u, v>))
//! conversion  ~ Bernoulli(sigmoid(b_v + 0.6 (item + <u, v>) + own conversion weights))  only after a click
//! (3 tasks)   cart after a click, order after a cart, each with shared and own parts
//! ```
//!
//! Biases are calibrated on a sample so the rates hit their targets (click about 4%,
//! conversion given click about 15%). Everything is a pure function of the seed: the same
//! seed writes the same bytes. The teacher has a seed of its own: datasets drawn with
//! different sampling seeds and the same teacher seed are a training and an evaluation set
//! of the same world.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, ShardError, io};
use crate::schema::{DenseSpec, FORMAT_VERSION, MultiField, Pooling, Schema, SingleField};
use crate::writer::{DatasetInfo, Row, ShardWriter};

/// Single-valued fields of the Ali-CCP layout, in the released code's order, with hash sizes.
pub const ALICCP_SINGLE: [(&str, u32); 17] = [
    ("205", 3_168_700),
    ("206", 8_700),
    ("207", 610_400),
    ("216", 210_000),
    ("301", 4),
    ("508", 7_800),
    ("509", 388_900),
    ("702", 144_000),
    ("101", 294_900),
    ("121", 100),
    ("122", 16),
    ("124", 4),
    ("125", 16),
    ("126", 8),
    ("127", 8),
    ("128", 8),
    ("129", 8),
];

/// Multi-valued fields of the Ali-CCP layout with hash sizes.
pub const ALICCP_MULTI: [(&str, u32); 2] = [("210", 99_000), ("853", 87_000)];

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Rows (impressions).
    pub rows: usize,
    /// Seed of the sampling (sessions, impressions, labels): datasets drawn with different
    /// seeds are different samples of the same world.
    pub seed: u64,
    /// Seed of the hidden teacher (the world: item attributes, weights, interactions).
    /// Train and evaluation sets must share it.
    pub teacher_seed: u64,
    /// 2 (click, conversion) or 3 (click, cart, order).
    pub tasks: usize,
    /// Cap on every field's vocabulary (the real hash sizes reach 3.2 million).
    pub max_vocab: u32,
    /// Target click rate.
    pub click_rate: f64,
    /// Target rate of the last task given a click.
    pub conversion_rate: f64,
    /// Rows per shard file.
    pub rows_per_shard: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            rows: 200_000,
            seed: 1,
            teacher_seed: 2024,
            tasks: 2,
            max_vocab: 2_000,
            click_rate: 0.04,
            conversion_rate: 0.15,
            rows_per_shard: 65_536,
        }
    }
}

/// Task names for 2 or 3 tasks.
pub fn task_names(tasks: usize) -> Vec<String> {
    let names: &[&str] = if tasks == 3 {
        &["click", "cart", "order"]
    } else {
        &["click", "conversion"]
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// The schema of a synthetic dataset.
pub fn schema(config: &SynthConfig) -> Schema {
    Schema {
        format_version: FORMAT_VERSION,
        tasks: task_names(config.tasks),
        single: ALICCP_SINGLE
            .iter()
            .map(|&(name, vocab)| SingleField {
                name: name.into(),
                vocab: vocab.min(config.max_vocab),
            })
            .collect(),
        multi: ALICCP_MULTI
            .iter()
            .map(|&(name, vocab)| MultiField {
                name: name.into(),
                vocab: vocab.min(config.max_vocab),
                pooling: Pooling::Sum,
            })
            .collect(),
        dense: DenseSpec::default(),
        group: Some("session".into()),
        weight: false,
        soft_labels: false,
        targets: Vec::new(),
        item: Some("205".into()),
        encodings: Vec::new(),
    }
}

/// A 64-bit mix of several values (SplitMix64's finaliser over a running hash).
pub(crate) fn mix(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// Uniform in [0, 1) from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Roughly standard normal from a hash (sum of four uniforms, rescaled).
pub(crate) fn gauss(h: u64) -> f64 {
    let s: f64 = (0..4).map(|k| unit(mix(&[h, k]))).sum();
    (s - 2.0) * (3.0f64).sqrt()
}

/// The latent state behind one impression.
struct Impression {
    single: [u32; 17],
    bag210: Vec<u32>,
    bag853: Vec<u32>,
    /// Teacher scores: shared (item, user, interaction) and per-task own parts.
    shared: f64,
    own: [f64; 3],
    click_only: f64,
}

struct Teacher {
    seed: u64,
    vocab: [u32; 17],
    vocab_bag: [u32; 2],
}

impl Teacher {
    fn weight(&self, salt: u64, id: u32, scale: f64) -> f64 {
        scale * gauss(mix(&[self.seed, salt, id as u64]))
    }

    /// Rank-4 interaction between a user and an item.
    fn interaction(&self, user: u32, item: u32) -> f64 {
        (0..4u64)
            .map(|k| {
                0.7 * gauss(mix(&[self.seed, 900 + k, user as u64]))
                    * 0.7
                    * gauss(mix(&[self.seed, 950 + k, item as u64]))
            })
            .sum()
    }

    fn impression(&self, session: u64, user: u32, scenario: u32, item: u32) -> Impression {
        let v = &self.vocab;
        let h = |parts: &[u64], vocab: u32| (mix(parts) % vocab as u64) as u32;
        let s = self.seed;
        let (cat, shop, brand) = (
            h(&[s, 206, item as u64], v[1]),
            h(&[s, 207, item as u64], v[2]),
            h(&[s, 216, item as u64], v[3]),
        );
        let cross = |f: u64, k: usize| h(&[s, f, user as u64, item as u64], v[k]);
        let mut single = [0u32; 17];
        single[0] = item;
        single[1] = cat;
        single[2] = shop;
        single[3] = brand;
        single[4] = scenario;
        single[5] = cross(508, 5);
        single[6] = cross(509, 6);
        single[7] = h(&[s, 702, user as u64, cat as u64], v[7]);
        single[8] = user;
        for (k, f) in (9..17).zip([121u64, 122, 124, 125, 126, 127, 128, 129]) {
            single[k] = h(&[s, f, user as u64], v[k]);
        }
        let tags = 1 + (mix(&[s, 2100, item as u64]) % 3) as usize;
        let bag210 = (0..tags)
            .map(|j| h(&[s, 210, item as u64, j as u64], self.vocab_bag[0]))
            .collect();
        let n853 = (mix(&[s, 8530, user as u64, cat as u64]) % 3) as usize;
        let bag853 = (0..n853)
            .map(|j| {
                h(
                    &[s, 853, user as u64, cat as u64, j as u64],
                    self.vocab_bag[1],
                )
            })
            .collect();
        let shared = self.weight(1, item, 1.0) + self.interaction(user, item);
        let click_only = self.weight(2, user, 0.5)
            + self.weight(3, cat, 0.5)
            + self.weight(4, single[5], 0.3)
            + self.weight(5, scenario, 0.3);
        let own = [
            self.weight(11, item, 0.6) + self.weight(12, brand, 0.4),
            self.weight(21, item, 0.6) + self.weight(22, shop, 0.4),
            self.weight(31, item, 0.6) + self.weight(32, single[9], 0.4),
        ];
        let _ = session;
        Impression {
            single,
            bag210,
            bag853,
            shared,
            own,
            click_only,
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Bias `b` with `sum_i w_i sigmoid(z_i + b) / sum_i w_i = target` (bisection): the rate
/// among the rows that reach this stage of the funnel, each weighted by the probability
/// that it reaches it.
fn calibrate(zs: &[f64], weights: &[f64], target: f64) -> f64 {
    let total: f64 = weights.iter().sum();
    let (mut lo, mut hi) = (-30.0, 30.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        let m = zs
            .iter()
            .zip(weights)
            .map(|(z, w)| w * sigmoid(z + mid))
            .sum::<f64>()
            / total.max(f64::MIN_POSITIVE);
        if m < target { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// The generator's state: sessions and the calibrated teacher.
struct Generator {
    cfg: SynthConfig,
    teacher: Teacher,
    bias: [f64; 4],
}

impl Generator {
    fn new(cfg: &SynthConfig) -> Result<Self> {
        if cfg.tasks != 2 && cfg.tasks != 3 {
            return Err(ShardError::Schema(format!(
                "synthetic data has 2 or 3 tasks, not {}",
                cfg.tasks
            )));
        }
        if !(cfg.click_rate > 0.0
            && cfg.click_rate < 1.0
            && cfg.conversion_rate > 0.0
            && cfg.conversion_rate < 1.0)
        {
            return Err(ShardError::Schema(
                "rates must lie strictly between 0 and 1".into(),
            ));
        }
        if cfg.max_vocab < 4 {
            return Err(ShardError::Schema("max_vocab must be at least 4".into()));
        }
        let sch = schema(cfg);
        let mut vocab = [0u32; 17];
        for (v, f) in vocab.iter_mut().zip(&sch.single) {
            *v = f.vocab;
        }
        let teacher = Teacher {
            seed: cfg.teacher_seed,
            vocab,
            vocab_bag: [sch.multi[0].vocab, sch.multi[1].vocab],
        };
        let mut g = Self {
            cfg: cfg.clone(),
            teacher,
            bias: [0.0; 4],
        };
        // Calibrate on a sample of impressions.
        let sample: Vec<Impression> = (0..20_000u64).map(|i| g.draw(i / 50, i)).collect();
        let click_z: Vec<f64> = sample.iter().map(|m| m.shared + m.click_only).collect();
        g.bias[0] = calibrate(&click_z, &vec![1.0; click_z.len()], cfg.click_rate);
        let p_click: Vec<f64> = click_z.iter().map(|z| sigmoid(z + g.bias[0])).collect();
        let stage = |k: usize| {
            sample
                .iter()
                .map(|m| 0.6 * m.shared + m.own[k])
                .collect::<Vec<f64>>()
        };
        if cfg.tasks == 2 {
            g.bias[1] = calibrate(&stage(0), &p_click, cfg.conversion_rate);
        } else {
            // cart | click and order | cart, whose product is the conversion rate.
            let r = cfg.conversion_rate.sqrt();
            let cart_z = stage(1);
            g.bias[1] = calibrate(&cart_z, &p_click, r);
            let reach: Vec<f64> = p_click
                .iter()
                .zip(&cart_z)
                .map(|(p, z)| p * sigmoid(z + g.bias[1]))
                .collect();
            g.bias[2] = calibrate(&stage(2), &reach, r);
        }
        Ok(g)
    }

    fn user_of(&self, session: u64) -> (u32, u32) {
        let s = self.cfg.seed;
        let u = unit(mix(&[s, 101, session]));
        (
            (u * u * self.teacher.vocab[8] as f64) as u32,
            (mix(&[s, 301, session]) % self.teacher.vocab[4] as u64) as u32,
        )
    }

    fn draw(&self, session: u64, index: u64) -> Impression {
        let (user, scenario) = self.user_of(session);
        let u = unit(mix(&[self.cfg.seed, 205, index]));
        let item = ((u * u * u) * self.teacher.vocab[0] as f64) as u32;
        self.teacher.impression(session, user, scenario, item)
    }

    /// Samples the funnel's labels for impression `index`.
    fn labels(&self, m: &Impression, index: u64, out: &mut [f32]) {
        let coin = |k: u64| unit(mix(&[self.cfg.seed, 7000 + k, index]));
        let click = coin(0) < sigmoid(self.bias[0] + m.shared + m.click_only);
        out.fill(0.0);
        out[0] = click as u8 as f32;
        if !click {
            return;
        }
        if self.cfg.tasks == 2 {
            out[1] = (coin(1) < sigmoid(self.bias[1] + 0.6 * m.shared + m.own[0])) as u8 as f32;
        } else {
            let cart = coin(1) < sigmoid(self.bias[1] + 0.6 * m.shared + m.own[1]);
            out[1] = cart as u8 as f32;
            if cart {
                out[2] = (coin(2) < sigmoid(self.bias[2] + 0.6 * m.shared + m.own[2])) as u8 as f32;
            }
        }
    }

    /// Calls `f(session, impression, labels)` for every row, in order.
    fn for_each_row(
        &self,
        mut f: impl FnMut(u64, &Impression, &[f32]) -> Result<()>,
    ) -> Result<()> {
        let mut labels = vec![0.0f32; self.cfg.tasks];
        let (mut row, mut session) = (0usize, 0u64);
        while row < self.cfg.rows {
            let len = 20 + (mix(&[self.cfg.seed, 99, session]) % 81) as usize;
            for _ in 0..len.min(self.cfg.rows - row) {
                let m = self.draw(session, row as u64);
                self.labels(&m, row as u64, &mut labels);
                f(session, &m, &labels)?;
                row += 1;
            }
            session += 1;
        }
        Ok(())
    }
}

/// Writes a synthetic dataset to `out` (a new or empty directory).
pub fn generate(config: &SynthConfig, out: &Path) -> Result<DatasetInfo> {
    let g = Generator::new(config)?;
    let mut w = ShardWriter::create(out, schema(config), config.rows_per_shard, false)?;
    g.for_each_row(|session, m, labels| {
        let bags: [&[u32]; 2] = [&m.bag210, &m.bag853];
        w.push(&Row {
            labels,
            single: &m.single,
            bags: &bags,
            dense: &[],
            group: session,
            weight: 1.0,
        })
    })?;
    w.finish()
}

/// Writes the same rows as [`generate`] as CSV in the Ali-CCP layout of the released code,
/// with a header: `sample_id,session,<task labels>,<17 field columns>,210,853`, bags as
/// `;`-separated ids.
pub fn write_csv(config: &SynthConfig, path: &Path) -> Result<()> {
    let g = Generator::new(config)?;
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut out = std::io::BufWriter::new(file);
    let mut header = vec!["sample_id".to_string(), "session".into()];
    header.extend(task_names(config.tasks));
    header.extend(ALICCP_SINGLE.iter().map(|f| f.0.to_string()));
    header.extend(ALICCP_MULTI.iter().map(|f| f.0.to_string()));
    writeln!(out, "{}", header.join(",")).map_err(io(path))?;
    let mut id = 0u64;
    let mut line = String::new();
    g.for_each_row(|session, m, labels| {
        use std::fmt::Write as _;
        line.clear();
        let _ = write!(line, "{id},{session}");
        for y in labels {
            let _ = write!(line, ",{}", *y as u8);
        }
        for v in m.single {
            let _ = write!(line, ",{v}");
        }
        for bag in [&m.bag210, &m.bag853] {
            line.push(',');
            for (j, v) in bag.iter().enumerate() {
                let _ = write!(line, "{}{v}", if j > 0 { ";" } else { "" });
            }
        }
        id += 1;
        writeln!(out, "{line}").map_err(io(path))
    })?;
    out.flush().map_err(io(path))
}
