//! The built-in synthetic funnel as a pair of temporary datasets: a training set and an
//! evaluation set drawn from the same world with different seeds, for the demo and the
//! comparison when no data is given. The directory is removed when the funnel is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use shards::Dataset;
use shards::synth::SynthConfig;

use crate::Error;

/// The smallest dataset the funnel draws (fewer rows give metrics without meaning).
pub const MIN_ROWS: usize = 1000;

/// What to draw: `rows` training rows and a quarter as many for evaluation (at least
/// [`MIN_ROWS`] each), with `tasks` tasks (2: click, conversion; 3: click, cart, order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunnelSpec {
    /// Training rows asked for.
    pub rows: usize,
    /// Tasks (2 or 3).
    pub tasks: usize,
}

impl FunnelSpec {
    /// Training rows drawn.
    pub fn train_rows(&self) -> usize {
        self.rows.max(MIN_ROWS)
    }

    /// Evaluation rows drawn.
    pub fn eval_rows(&self) -> usize {
        (self.rows / 4).max(MIN_ROWS)
    }

    /// The task names, in funnel order.
    pub fn task_names(&self) -> Vec<String> {
        shards::synth::task_names(self.tasks)
    }

    /// Draws the two datasets into a fresh temporary directory (training seed 1,
    /// evaluation seed 2).
    pub fn generate(self) -> Result<Funnel, Error> {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = TempDir(std::env::temp_dir().join(format!(
            "resflow-funnel-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        )));
        let _ = std::fs::remove_dir_all(&dir.0);
        let make = |rows: usize, seed, name: &str| -> Result<Dataset, Error> {
            let config = SynthConfig {
                rows,
                seed,
                tasks: self.tasks,
                ..Default::default()
            };
            shards::synth::generate(&config, &dir.0.join(name))?;
            Ok(Dataset::open(&dir.0.join(name))?)
        };
        let train = make(self.train_rows(), 1, "train")?;
        let eval = make(self.eval_rows(), 2, "eval")?;
        Ok(Funnel {
            train,
            eval,
            _dir: dir,
        })
    }
}

/// The generated datasets (fields drop in order: the datasets before their directory).
#[derive(Debug)]
pub struct Funnel {
    /// The training set.
    pub train: Dataset,
    /// The evaluation set.
    pub eval: Dataset,
    _dir: TempDir,
}

/// A directory removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
