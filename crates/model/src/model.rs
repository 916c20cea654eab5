//! A model: its configuration, its input layout, one embedding table per field, and every
//! other parameter as a named tensor. The one representation of every model kind, for
//! training (initial values, checkpoints), the model file and serving.
//!
//! ```text
//! x  = [emb(f_0) | ... | emb(f_F-1) | dense]       (N x I), I = F dim + D
//! x' = BN_in(x)                                     input_bn/{gamma,beta,running_mean,running_var}
//! z_1..z_T = head(x')                               head/<kind>/...   (see models/)
//! p_t = sigmoid(z_t)
//! ```
//!
//! [`Net`] is the structure a model's tensors describe (the input BatchNorm and the head,
//! holding references into the tensors); [`Model::net`] builds it and so checks that every
//! tensor is there with its shape and none is left over.

use tensor::Matrix;

use crate::config::{BatchNormMode, ModelConfig};
use crate::error::ModelError;
use crate::graph::{Graph, Node};
use crate::layers::{BatchNorm, Builder};
use crate::layout::InputLayout;
use crate::models::{self, Head};
use crate::rng::SplitMix64;

/// Every parameter of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The configuration.
    pub config: ModelConfig,
    /// The inputs and tasks.
    pub layout: InputLayout,
    /// One `vocab x dim` table per field, in layout order.
    pub embeddings: Vec<Matrix>,
    /// The input BatchNorm and the head, as named tensors (running statistics included),
    /// in the order [`Model::net`] finds them in.
    pub tensors: Vec<(String, Matrix)>,
}

/// The structure of a model: the input BatchNorm and the head.
#[derive(Debug)]
pub struct Net {
    /// `BN_in`, on the concatenated input.
    pub input_bn: BatchNorm,
    /// Everything from `x'` to the logits.
    pub head: Box<dyn Head>,
}

impl Net {
    /// Creates (`b` initialising) or finds (`b` loading) the input BatchNorm and the head of
    /// `config` for inputs of `layout`.
    pub fn build(
        config: &ModelConfig,
        layout: &InputLayout,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let input = layout.input_width(config.embedding_dim);
        Ok(Self {
            input_bn: b.batch_norm("input_bn", input)?,
            head: models::build(config, input, b)?,
        })
    }

    /// Records `x' = BN_in(x)` and the head on `g`: one `N x 1` logit per task into
    /// `logits` (cleared first). Returns `x'` (the head's input, for its training loss).
    pub fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<Node, ModelError> {
        logits.clear();
        let x = g.batch_norm(x, &self.input_bn)?;
        self.head.forward(g, x, logits)?;
        Ok(x)
    }

    /// [`Net::forward`] for training ([`Head::forward_train`]): also the nodes the head's
    /// loss reads, into `aux` (cleared first).
    pub fn forward_train(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
        aux: &mut Vec<Node>,
    ) -> Result<Node, ModelError> {
        logits.clear();
        aux.clear();
        let x = g.batch_norm(x, &self.input_bn)?;
        self.head.forward_train(g, x, logits, aux)?;
        Ok(x)
    }
}

impl Model {
    /// Freshly initialised parameters, seeded by `config.seed`: embeddings
    /// `U(-0.05, 0.05)`, then the layers as [`crate::layers`] describes.
    pub fn init(config: ModelConfig, layout: InputLayout) -> Result<Self, ModelError> {
        Self::init_on_threads(config, layout, 1)
    }

    /// [`Model::init`] with the embedding tables written on up to `threads` threads: the
    /// same values bit for bit, whatever `threads` is. Every row is drawn on its own
    /// ([`TableInit::row`]: the stream jumps to the row's position in one multiply), so a
    /// thread can write any block of rows, and each element is written once (the memory
    /// is not zeroed first). On the full Ali-CCP tables (643 MB) this is most of the
    /// time before the first step, mainly the kernel clearing the fresh pages as they
    /// are first written, which the threads then share.
    pub fn init_on_threads(
        config: ModelConfig,
        layout: InputLayout,
        threads: usize,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        layout.validate()?;
        check_tasks(&config, &layout)?;
        // Fields named in the configuration exist; the sizes fit in memory.
        crate::checks::check_config_for_layout(&config, &layout)?;
        // Row by row, one stream: row `id` of table `k` is the stream's draws from
        // `start_k + id dim` on ([`TableInit`]); the dense layers draw after every table.
        let tables = TableInit::new(&config, &layout);
        let dim = config.embedding_dim;
        let embeddings = layout
            .fields
            .iter()
            .enumerate()
            .map(|(k, f)| {
                Matrix::try_from_rows(f.vocab as usize, dim, threads, |id, row| {
                    tables.row(k, id as u32, row)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rng = SplitMix64::new(config.seed);
        rng.skip(tables.draws);
        let mut b = Builder::init(rng);
        Net::build(&config, &layout, &mut b)?;
        let tensors = b.finish()?;
        Ok(Self {
            config,
            layout,
            embeddings,
            tensors,
        })
    }

    /// [`Model::init`] without its embedding tables, for a process that holds only some of
    /// their rows (row-sharded training): every other tensor exactly as [`Model::init`]
    /// draws it, the tables `0 x dim`, and the [`TableInit`] that draws any row of them as
    /// [`Model::init`] would. The memory check counts `1/ranks` of the tables (with their
    /// optimiser state), this process's part.
    pub fn init_without_tables(
        config: ModelConfig,
        layout: InputLayout,
        ranks: usize,
    ) -> Result<(Self, TableInit), ModelError> {
        config.validate()?;
        layout.validate()?;
        check_tasks(&config, &layout)?;
        crate::checks::check_config_for_layout_share(&config, &layout, ranks)?;
        let tables = TableInit::new(&config, &layout);
        let mut rng = SplitMix64::new(config.seed);
        rng.skip(tables.draws);
        let dim = config.embedding_dim;
        let embeddings = layout
            .fields
            .iter()
            .map(|_| Matrix::zeros(0, dim))
            .collect();
        let mut b = Builder::init(rng);
        Net::build(&config, &layout, &mut b)?;
        let tensors = b.finish()?;
        let model = Self {
            config,
            layout,
            embeddings,
            tensors,
        };
        Ok((model, tables))
    }

    /// A model with random parameters everywhere (not the initial zeros and ones: random
    /// biases, PReLU slopes, BatchNorm scales, shifts and statistics), for tests and
    /// benchmarks of the serving path.
    pub fn random(config: ModelConfig, layout: InputLayout, seed: u64) -> Result<Self, ModelError> {
        let mut model = Self::init(ModelConfig { seed, ..config }, layout)?;
        let mut rng = SplitMix64::new(seed ^ 0x5EED);
        for (name, m) in &mut model.tensors {
            let draw: Option<(f32, f32)> = [
                ("/bias", (0.0, 0.1)),
                ("/slope", (0.0, 0.25)),
                ("/gamma", (1.0, 0.2)),
                ("/beta", (0.0, 0.1)),
                ("/running_mean", (0.0, 0.1)),
                ("/running_var", (1.0, 0.2)),
            ]
            .iter()
            .find(|(suffix, _)| name.ends_with(suffix))
            .map(|&(_, d)| d);
            if let Some((centre, spread)) = draw {
                *m = Matrix::from_fn(m.rows(), m.cols(), |_, _| centre + rng.uniform(spread));
            }
        }
        model.config.seed = config.seed;
        Ok(model)
    }

    /// The model's structure, built from its tensors: checks the configuration, the layout,
    /// every tensor's presence and shape, and that none is left over.
    pub fn net(&self) -> Result<Net, ModelError> {
        self.config.validate()?;
        self.layout.validate()?;
        let bad = |d: String| Err(ModelError::Layout(d));
        check_tasks(&self.config, &self.layout)?;
        let dim = self.config.embedding_dim;
        if self.embeddings.len() != self.layout.fields.len() {
            return bad(format!(
                "{} embedding tables for {} fields",
                self.embeddings.len(),
                self.layout.fields.len()
            ));
        }
        for (table, field) in self.embeddings.iter().zip(&self.layout.fields) {
            if table.shape() != (field.vocab as usize, dim) {
                return bad(format!(
                    "table of {:?} is {:?}, expected ({}, {dim})",
                    field.name,
                    table.shape(),
                    field.vocab
                ));
            }
        }
        let mut b = Builder::load(&self.tensors)?;
        let net = Net::build(&self.config, &self.layout, &mut b)?;
        b.finish()?;
        Ok(net)
    }

    /// [`Model::net`] without the tables' row counts (their widths are checked): for a
    /// process of row-sharded training, whose tables hold only some rows.
    pub fn dense_net(&self) -> Result<Net, ModelError> {
        self.config.validate()?;
        self.layout.validate()?;
        check_tasks(&self.config, &self.layout)?;
        let dim = self.config.embedding_dim;
        if self.embeddings.len() != self.layout.fields.len()
            || self.embeddings.iter().any(|t| t.cols() != dim)
        {
            return Err(ModelError::Layout(format!(
                "{} embedding tables for {} fields of width {dim}",
                self.embeddings.len(),
                self.layout.fields.len()
            )));
        }
        let mut b = Builder::load(&self.tensors)?;
        let net = Net::build(&self.config, &self.layout, &mut b)?;
        b.finish()?;
        Ok(net)
    }

    /// Checks that every tensor has the shape the configuration and layout imply.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.net().map(|_| ())
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Matrix> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }

    /// Number of trainable floats (embedding tables included): running statistics never,
    /// PReLU slopes only with PReLU, BatchNorm scale and shift only with BatchNorm.
    pub fn parameter_count(&self) -> usize {
        self.embeddings
            .iter()
            .map(|t| t.rows() * t.cols())
            .sum::<usize>()
            + self.dense_parameter_count()
    }

    /// Trainable floats outside the embedding tables.
    pub fn dense_parameter_count(&self) -> usize {
        models::trainable(&self.config, &self.tensors)
    }

    /// Multiply-adds of the dense layers for one candidate (the embedding lookups and the
    /// element-wise work are not counted; a FLOP count is twice this).
    pub fn multiply_adds(&self) -> usize {
        models::multiply_adds(&self.tensors)
    }
}

/// The initial values of a model's embedding tables, any row on its own: [`Model::init`]
/// draws the tables one after the other, row by row, from one SplitMix64 stream, so row
/// `id` of table `k` is the `dim` draws starting at position `start_k + id dim` of that
/// stream (`start_k` the floats of the tables before `k`). A generator jumps to any
/// position in one multiply ([`SplitMix64::skip`]), so a process that owns some rows draws
/// exactly their values, whichever process it is, without drawing the others.
#[derive(Debug, Clone)]
pub struct TableInit {
    seed: u64,
    dim: usize,
    /// Per table: its first draw's position in the stream.
    starts: Vec<u64>,
    /// Draws of every table (the dense layers' draws follow them).
    draws: u64,
}

impl TableInit {
    /// The tables of `layout` with `config`'s seed and width.
    pub fn new(config: &ModelConfig, layout: &InputLayout) -> Self {
        let dim = config.embedding_dim;
        let mut starts = Vec::with_capacity(layout.fields.len());
        let mut at = 0u64;
        for f in &layout.fields {
            starts.push(at);
            at += u64::from(f.vocab) * dim as u64;
        }
        Self {
            seed: config.seed,
            dim,
            starts,
            draws: at,
        }
    }

    /// Writes row `id` of table `k` (`dim` floats) as [`Model::init`] draws it.
    pub fn row(&self, k: usize, id: u32, out: &mut [f32]) {
        let mut rng = SplitMix64::new(self.seed);
        rng.skip(self.starts[k] + u64::from(id) * self.dim as u64);
        for x in out.iter_mut().take(self.dim) {
            *x = rng.uniform(0.05);
        }
    }
}

/// The names of a model's tensors (embeddings aside) in creation order.
pub(crate) fn tensor_names(
    config: &ModelConfig,
    layout: &InputLayout,
) -> Result<Vec<String>, ModelError> {
    let mut b = Builder::init(SplitMix64::new(0));
    Net::build(config, layout, &mut b)?;
    Ok(b.finish()?.into_iter().map(|(n, _)| n).collect())
}

/// The inference-time transform `y = scale x + shift` of a BatchNorm with these values:
///
/// - `affine` (the authors' code): statistics frozen at 0 / 1, so
///   `scale = gamma / sqrt(1 + eps)`, `shift = beta`;
/// - `batch`: `scale = gamma / sqrt(var + eps)`, `shift = beta - mean scale`;
/// - `none`: the identity.
pub fn bn_scale_shift(
    mode: BatchNormMode,
    eps: f32,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let n = gamma.len();
    match mode {
        BatchNormMode::None => (vec![1.0; n], vec![0.0; n]),
        BatchNormMode::Affine => (
            gamma.iter().map(|g| g / (1.0 + eps).sqrt()).collect(),
            beta.to_vec(),
        ),
        BatchNormMode::Batch => {
            let scale: Vec<f32> = gamma
                .iter()
                .zip(var)
                .map(|(g, v)| g / (v + eps).sqrt())
                .collect();
            let shift = beta
                .iter()
                .zip(mean)
                .zip(&scale)
                .map(|((b, m), s)| b - m * s)
                .collect();
            (scale, shift)
        }
    }
}

/// The data's tasks against the configuration's: one label per task, or, for a regression
/// model, the target among the data's columns and the thresholds resolved.
fn check_tasks(config: &ModelConfig, layout: &InputLayout) -> Result<(), ModelError> {
    match &config.regression {
        None if layout.tasks.len() != config.tasks.len() => Err(ModelError::Layout(format!(
            "the data has {} tasks ({:?}), the configuration {}",
            layout.tasks.len(),
            layout.tasks,
            config.tasks.len()
        ))),
        None => Ok(()),
        Some(r) if !layout.tasks.contains(&r.target) => Err(ModelError::Layout(format!(
            "the regression target {:?} is not a column of the data (its tasks: {:?})",
            r.target, layout.tasks
        ))),
        Some(r) if !r.is_resolved() => Err(ModelError::Config(
            "regression: thresholds, end values or statistics are not resolved; resolve them \
             from the training target first (ModelConfig::resolve_regression)"
                .into(),
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Field;

    fn layout() -> InputLayout {
        InputLayout {
            fields: [("a", 7), ("b", 1), ("c", 13)]
                .iter()
                .map(|&(name, vocab)| Field {
                    name: name.into(),
                    vocab,
                    bag: None,
                })
                .collect(),
            dense: 2,
            tasks: vec!["click".into(), "buy".into()],
        }
    }

    #[test]
    fn tables_are_one_stream_in_order_on_any_number_of_threads() {
        // Large enough tables for the parallel writer (more than 2^18 floats each), with
        // row counts that do not split evenly.
        let mut l = layout();
        l.fields[0].vocab = 9_001;
        l.fields[1].vocab = 12_345;
        let config = ModelConfig {
            embedding_dim: 32,
            seed: 5,
            ..ModelConfig::default()
        };
        // The definition: every table row by row, then the dense layers, from one stream.
        let mut rng = SplitMix64::new(config.seed);
        let want: Vec<Vec<f32>> = l
            .fields
            .iter()
            .map(|f| {
                (0..f.vocab as usize * 32)
                    .map(|_| rng.uniform(0.05))
                    .collect()
            })
            .collect();
        let mut b = Builder::init(rng);
        Net::build(&config, &l, &mut b).unwrap();
        let dense = b.finish().unwrap();
        for threads in [1, 2, 3] {
            let m = Model::init_on_threads(config.clone(), l.clone(), threads).unwrap();
            for (t, w) in m.embeddings.iter().zip(&want) {
                assert_eq!(t.as_slice(), &w[..], "{threads} threads");
            }
            assert_eq!(m.tensors, dense);
        }
    }

    #[test]
    fn any_row_and_the_rest_of_the_model_are_drawn_as_init_draws_them() {
        let config = ModelConfig {
            embedding_dim: 3,
            seed: 11,
            ..ModelConfig::default()
        };
        let whole = Model::init(config.clone(), layout()).unwrap();
        let (part, tables) = Model::init_without_tables(config, layout(), 2).unwrap();
        assert_eq!(part.tensors, whole.tensors);
        assert!(part.embeddings.iter().all(|t| t.shape() == (0, 3)));
        assert!(part.dense_net().is_ok());
        assert!(
            part.net().is_err(),
            "the whole check still wants whole tables"
        );
        let mut row = [0.0f32; 3];
        for (k, t) in whole.embeddings.iter().enumerate() {
            // In any order: each row on its own.
            for id in (0..t.rows() as u32).rev() {
                tables.row(k, id, &mut row);
                assert_eq!(&row[..], t.row(id as usize));
            }
        }
    }
}
