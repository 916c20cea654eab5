//! What the commands share: the thread count, opening a dataset, reading a configuration,
//! the synthetic funnel's announcement, the progress display and the JSON reports. It
//! depends on no other command module but `eval_options` (for printing evaluations).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use metrics::EvalReport;
use resflow::funnel::{Funnel, FunnelSpec};
use resflow::session::{EvalPoint, Progress};
use resflow::{ModelConfig, StepStats, Trainer};
use serde::Serialize;
use shards::Dataset;

/// The result of a command.
pub type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// `--threads` (default: every core), with a warning when it is more than the cores.
pub fn threads(n: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = n.filter(|&n| n > cores) {
        eprintln!(
            "warning: --threads {n} is more than the {cores} cores available; the workers will \
             contend for them and run slower than with --threads {cores}"
        );
    }
    n.unwrap_or(cores).max(1)
}

/// The dataset in `dir`.
pub fn open(dir: &Path) -> Fallible<Dataset> {
    Dataset::open(dir).map_err(|e| format!("cannot open dataset {}: {e}", dir.display()).into())
}

/// The configuration file `path` (JSON), read and checked.
pub fn read_config(path: &Path) -> Fallible<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ModelConfig::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// The built-in synthetic funnel of `tasks` tasks and `rows` training rows, announced on
/// stderr and generated into a temporary directory (removed when it is dropped).
pub fn synthetic_funnel(rows: usize, tasks: usize) -> Fallible<Funnel> {
    let spec = FunnelSpec { rows, tasks };
    eprintln!(
        "generating a synthetic {} funnel: {} training rows, {} evaluation rows",
        spec.task_names().join(" -> "),
        spec.train_rows(),
        spec.eval_rows()
    );
    Ok(spec.generate()?)
}

/// `value` as pretty JSON, written atomically to `path`.
pub fn write_json(path: &Path, value: &impl Serialize) -> Fallible {
    let text = serde_json::to_string_pretty(value)?;
    resflow::write_atomically(path, text.as_bytes())?;
    Ok(())
}

/// The progress display of training runs: a bar per epoch when both stdout and stderr are
/// terminals; otherwise (output piped or logged) a plain line on stderr after an epoch's
/// first step and every few seconds. Evaluations during training are printed as tables,
/// notes on stderr.
pub struct Bar {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    start: Instant,
    rows: u64,
}

impl Default for Bar {
    fn default() -> Self {
        Self {
            bar: None,
            last_line: None,
            start: Instant::now(),
            rows: 0,
        }
    }
}

impl Progress for Bar {
    fn epoch_started(&mut self, run: &str, epoch: usize, epochs: usize, rows: u64) {
        let terminal = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
        let bar = terminal.then(|| {
            let b = ProgressBar::new(rows);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(format!("{run} epoch {epoch}/{epochs}"));
            b
        });
        *self = Self {
            bar,
            ..Self::default()
        };
    }

    fn step(&mut self, trainer: &Trainer, s: &StepStats) -> Result<(), resflow::Error> {
        self.rows += s.rows as u64;
        let tasks = &trainer.network.config.tasks;
        let losses = tasks
            .iter()
            .zip(&s.losses)
            .map(|(t, l)| format!("{} {l:.4}", t.name))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.bar {
            Some(b) => {
                b.inc(s.rows as u64);
                b.set_message(format!("loss: {losses}"));
            }
            None if self
                .last_line
                .is_none_or(|t| t.elapsed().as_secs_f64() > 5.0) =>
            {
                let rate = self.rows as f64 / self.start.elapsed().as_secs_f64();
                eprintln!(
                    "epoch {} step {}: {:.0} samples/s, loss: {losses}",
                    trainer.epoch + 1,
                    trainer.step,
                    rate
                );
                self.last_line = Some(Instant::now());
            }
            None => {}
        }
        Ok(())
    }

    fn epoch_finished(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn evaluated(&mut self, point: EvalPoint, report: &EvalReport) {
        crate::eval_options::print_eval(&eval_title(point), report);
    }

    fn evaluated_regression(
        &mut self,
        point: EvalPoint,
        report: &resflow::regression::RegressionEval,
    ) {
        crate::eval_options::print_regression(&eval_title(point), report);
    }

    fn note(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// How an evaluation during training is titled.
fn eval_title(point: EvalPoint) -> String {
    match point {
        EvalPoint::Step(s) => format!("evaluation at step {s}"),
        EvalPoint::Epoch(e) => format!("evaluation after epoch {e}"),
    }
}
