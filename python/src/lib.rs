//! `resflow._native`: the Rust side of the Python package. The Python layer (`resflow/`)
//! turns dicts, pandas and pyarrow tables into contiguous numpy arrays of the right dtype;
//! this module borrows those arrays, releases the GIL, and calls the libraries:
//!
//! ```text
//! convert(input, out, ...)          shards::convert          -> report (JSON text)
//! train(train, eval, config, ...)   resflow::train           -> report (JSON text)
//! Model.load(path) / Model.score    model::Model + Scorer    -> (N x T, N) float32 arrays
//! auc / gauc / weighted_recall      metrics                  -> numbers
//! ```
//!
//! Every library error becomes a `resflow.ResflowError` carrying the library's message.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use model::{RequestBuffers, Scorer};

create_exception!(
    resflow,
    ResflowError,
    PyException,
    "An error of the resflow libraries (bad data, bad configuration, bad model file...)."
);

/// Any displayable error as a `ResflowError`.
fn err(e: impl std::fmt::Display) -> PyErr {
    ResflowError::new_err(e.to_string())
}

/// A contiguous numpy array's data (the Python layer passes contiguous arrays).
fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| err(format!("{what}: the array is not contiguous")))
}

/// Converts a CSV or Parquet file into a dataset; returns the report as JSON text.
#[pyfunction]
#[pyo3(signature = (input, out, layout, spec_json=None, labels=None, strict=false,
    drop_funnel_violations=false, rows_per_shard=65_536, vocab_from=None, raw_dense=false,
    quantiles=None))]
#[allow(clippy::too_many_arguments)]
fn convert(
    py: Python<'_>,
    input: PathBuf,
    out: PathBuf,
    layout: &str,
    spec_json: Option<&str>,
    labels: Option<&str>,
    strict: bool,
    drop_funnel_violations: bool,
    rows_per_shard: usize,
    vocab_from: Option<PathBuf>,
    raw_dense: bool,
    quantiles: Option<u32>,
) -> PyResult<String> {
    use shards::convert::{
        ConvertOptions, CsvSpec, LabelColumn, aliccp_spec, aliexpress_spec_for, read_header,
        relabel,
    };
    if rows_per_shard == 0 {
        return Err(err("rows_per_shard must be at least 1"));
    }
    let labels = labels
        .map(LabelColumn::parse_list)
        .transpose()
        .map_err(err)?;
    let spec_in = spec_json
        .map(serde_json::from_str::<CsvSpec>)
        .transpose()
        .map_err(|e| err(format!("spec: {e}")))?;
    let run = move || -> Result<String, String> {
        let header = read_header(&input).map_err(|e| e.to_string())?;
        let mut spec = match (layout, spec_in) {
            ("aliexpress", None) => aliexpress_spec_for(&header, labels.as_deref(), quantiles)
                .map_err(|e| e.to_string())?,
            ("aliccp", None) => {
                aliccp_spec(&header, labels.as_deref()).map_err(|e| e.to_string())?
            }
            ("csv", Some(spec)) => relabel(spec, labels.as_deref()),
            ("csv", None) => {
                return Err("layout \"csv\" needs a spec (a dict or a JSON file)".into());
            }
            (l @ ("aliexpress" | "aliccp"), Some(_)) => {
                return Err(format!("layout {l:?} has fixed columns: give no spec"));
            }
            (l, _) => {
                return Err(format!(
                    "unknown layout {l:?} (choose \"csv\", \"aliccp\" or \"aliexpress\")"
                ));
            }
        };
        if quantiles.is_some() && layout != "aliexpress" {
            return Err("quantiles applies to the AliExpress layout; with a spec give \"quantiles\" per column".into());
        }
        if raw_dense {
            spec.standardize = false;
        }
        let reuse = match &vocab_from {
            None => None,
            Some(dir) => Some(
                shards::Dataset::open(dir)
                    .map_err(|e| e.to_string())?
                    .schema()
                    .clone(),
            ),
        };
        let options = ConvertOptions {
            strict,
            drop_funnel_violations,
            rows_per_shard,
            reuse,
        };
        let r =
            shards::convert::convert(&input, &spec, &out, options).map_err(|e| e.to_string())?;
        let report = serde_json::json!({
            "rows": r.info.rows,
            "shards": r.info.shards,
            "dir": r.info.dir.display().to_string(),
            "tasks": r.info.schema.tasks,
            "bytes": r.bytes,
            "funnel_violations": r.funnel_violations,
            "dropped_rows": r.dropped_rows,
            "columns": r.columns,
        });
        Ok(report.to_string())
    };
    py.detach(run).map_err(err)
}

/// Trains a model through the library's training run (`resflow::train`: the same loop,
/// checkpoints and evaluation as `resflow train`); writes it to `out` if given; returns
/// the report (training throughput, final evaluation) as JSON text.
#[pyfunction]
#[pyo3(signature = (train, eval, config_json, options_json, out=None))]
fn train(
    py: Python<'_>,
    train: PathBuf,
    eval: Option<PathBuf>,
    config_json: Option<&str>,
    options_json: &str,
    out: Option<PathBuf>,
) -> PyResult<String> {
    let config = config_json
        .map(resflow::ModelConfig::from_json)
        .transpose()
        .map_err(|e| err(format!("config: {e}")))?;
    let options: resflow::SessionOptions =
        serde_json::from_str(options_json).map_err(|e| err(format!("options: {e}")))?;
    let run = move || -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let mut plan = resflow::OutputPlan::new().input("train_dir", &train);
        if let Some(e) = &eval {
            plan = plan.input("eval_dir", e);
        }
        plan.file("out", out.as_deref())
            .dir(
                "checkpoint_dir",
                options.checkpoint_dir.as_deref(),
                &[resflow::CHECKPOINT_FILE],
            )
            .check()?;
        let open = |dir: &PathBuf| {
            shards::Dataset::open(dir)
                .map_err(|e| format!("cannot open dataset {}: {e}", dir.display()))
        };
        let train = open(&train)?;
        let eval = eval.as_ref().map(open).transpose()?;
        let (trainer, report) = resflow::train(
            &train,
            eval.as_ref(),
            config,
            options,
            &mut resflow::session::Quiet,
        )?;
        if let Some(out) = &out {
            trainer.export()?.save(out)?;
        }
        Ok(serde_json::to_string(&report)?)
    };
    py.detach(run).map_err(err)
}

/// A trained model and its scorer.
#[pyclass(module = "resflow._native", frozen)]
struct Model {
    scorer: Scorer,
}

#[pymethods]
impl Model {
    /// Reads a model file (checksums, sizes and shapes checked) and compiles its plan with
    /// its GEMMs in `precision` (`"f32"` or `"int8"`).
    #[staticmethod]
    #[pyo3(signature = (path, precision="f32"))]
    fn load(py: Python<'_>, path: PathBuf, precision: &str) -> PyResult<Self> {
        let precision = model::Precision::parse(precision).map_err(err)?;
        py.detach(|| {
            let m = model::Model::load(&path)?;
            Scorer::with_precision(m, precision)
        })
        .map(|scorer| Self { scorer })
        .map_err(err)
    }

    /// The arithmetic of the scorer's GEMMs: `"f32"` or `"int8"`.
    #[getter]
    fn precision(&self) -> &'static str {
        self.scorer.precision().name()
    }

    /// Task names, in chain order.
    #[getter]
    fn tasks(&self) -> Vec<String> {
        self.scorer.model().layout.tasks.clone()
    }

    /// `(name, vocab, is_bag)` of every categorical field, in the model's order.
    #[getter]
    fn fields(&self) -> Vec<(String, u32, bool)> {
        self.scorer
            .model()
            .layout
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.vocab, f.bag.is_some()))
            .collect()
    }

    /// Number of dense features.
    #[getter]
    fn dense(&self) -> usize {
        self.scorer.model().layout.dense
    }

    /// The model kind's name.
    #[getter]
    fn kind(&self) -> String {
        self.scorer.model().config.model.name().to_string()
    }

    /// The fields given once per request (the rest are per candidate).
    #[getter]
    fn request_fields(&self) -> Vec<String> {
        self.scorer
            .request_fields()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Scores `rows` rows. `single`: one id array per single-valued field, `offsets` and
    /// `ids`: one pair per bag (row `r` owns `ids[offsets[r]..offsets[r + 1]]`), both in
    /// the model's field order; `dense`: `rows x D`. Consecutive rows with the same
    /// request-level values form one request. Returns `(rows x T probabilities, rows fused
    /// scores)`.
    #[allow(clippy::type_complexity)]
    fn _score<'py>(
        &self,
        py: Python<'py>,
        rows: usize,
        single: Vec<PyReadonlyArray1<'py, u32>>,
        offsets: Vec<PyReadonlyArray1<'py, u64>>,
        ids: Vec<PyReadonlyArray1<'py, u32>>,
        dense: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<(Bound<'py, PyArray1<f32>>, Bound<'py, PyArray1<f32>>)> {
        let single: Vec<&[u32]> = single
            .iter()
            .map(|a| slice(a, "ids"))
            .collect::<PyResult<_>>()?;
        let offsets: Vec<&[u64]> = offsets
            .iter()
            .map(|a| slice(a, "bag offsets"))
            .collect::<PyResult<_>>()?;
        let ids: Vec<&[u32]> = ids
            .iter()
            .map(|a| slice(a, "bag ids"))
            .collect::<PyResult<_>>()?;
        let dense = dense
            .as_slice()
            .map_err(|_| err("dense: the array is not contiguous"))?;
        let scorer = &self.scorer;
        let (probs, fused) = py
            .detach(|| score_rows(scorer, rows, &single, &offsets, &ids, dense))
            .map_err(err)?;
        Ok((PyArray1::from_vec(py, probs), PyArray1::from_vec(py, fused)))
    }
}

/// Where each of the scorer's groups finds its fields among the inputs.
struct Groups {
    cand_single: Vec<usize>,
    cand_bags: Vec<usize>,
    req_single: Vec<usize>,
    req_bags: Vec<usize>,
}

fn groups(scorer: &Scorer) -> Groups {
    let layout = &scorer.model().layout;
    // Input index of field i: its rank among the single-valued fields, or among the bags.
    let rank = |i: usize| {
        let bag = layout.fields[i].bag.is_some();
        (
            bag,
            layout.fields[..i]
                .iter()
                .filter(|f| f.bag.is_some() == bag)
                .count(),
        )
    };
    let split = |names: Vec<&str>| {
        let (mut s, mut b) = (Vec::new(), Vec::new());
        for n in names {
            if let Some(i) = layout.field_index(n) {
                match rank(i) {
                    (false, k) => s.push(k),
                    (true, k) => b.push(k),
                }
            }
        }
        (s, b)
    };
    let (cand_single, cand_bags) = split(scorer.candidate_fields());
    let (req_single, req_bags) = split(scorer.request_fields());
    Groups {
        cand_single,
        cand_bags,
        req_single,
        req_bags,
    }
}

/// The largest request scored at once.
const MAX_REQUEST: usize = 8192;

/// Scores every row, as requests of consecutive rows with equal request-level values.
fn score_rows(
    scorer: &Scorer,
    rows: usize,
    single: &[&[u32]],
    offsets: &[&[u64]],
    ids: &[&[u32]],
    dense: &[f32],
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let layout = &scorer.model().layout;
    let bags = layout.fields.iter().filter(|f| f.bag.is_some()).count();
    let d = layout.dense;
    if single.len() != layout.fields.len() - bags || offsets.len() != bags || ids.len() != bags {
        return Err(format!(
            "{} single-valued fields and {} bags given; the model has {} and {bags}",
            single.len(),
            offsets.len(),
            layout.fields.len() - bags
        ));
    }
    if single.iter().any(|s| s.len() != rows) {
        return Err(format!("every single-valued field needs {rows} ids"));
    }
    if dense.len() != rows * d {
        return Err(format!(
            "dense features: {} values for {rows} rows x {d} features",
            dense.len()
        ));
    }
    for (k, (o, i)) in offsets.iter().zip(ids).enumerate() {
        let name = &layout
            .fields
            .iter()
            .filter(|f| f.bag.is_some())
            .nth(k)
            .map(|f| f.name.as_str());
        let ok = o.len() == rows + 1
            && o[0] == 0
            && o.windows(2).all(|w| w[0] <= w[1])
            && o[rows] == i.len() as u64;
        if !ok {
            return Err(format!(
                "bag {}: offsets must be {} non-decreasing values from 0 to the number of ids",
                name.unwrap_or("?"),
                rows + 1
            ));
        }
    }
    let g = groups(scorer);
    let tasks = scorer.tasks();
    let (mut probs, mut fused) = (vec![0.0f32; rows * tasks], vec![0.0f32; rows]);
    let mut ws = scorer.workspace(rows.clamp(1, MAX_REQUEST));
    let mut buf = RequestBuffers::new(scorer);
    let bag = |k: usize, r: usize| &ids[k][offsets[k][r] as usize..offsets[k][r + 1] as usize];
    let same_request = |a: usize, b: usize| {
        g.req_single.iter().all(|&k| single[k][a] == single[k][b])
            && g.req_bags.iter().all(|&k| bag(k, a) == bag(k, b))
    };
    let (mut req_ids, mut cand_ids) = (Vec::new(), Vec::new());
    let (mut req_bags, mut cand_bags): (Vec<&[u32]>, Vec<&[u32]>) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < rows {
        let mut end = start + 1;
        while end < rows && end - start < MAX_REQUEST && same_request(start, end) {
            end += 1;
        }
        buf.clear();
        req_ids.clear();
        req_ids.extend(g.req_single.iter().map(|&k| single[k][start]));
        req_bags.clear();
        req_bags.extend(g.req_bags.iter().map(|&k| bag(k, start)));
        buf.set_request(&req_ids, &req_bags);
        for r in start..end {
            cand_ids.clear();
            cand_ids.extend(g.cand_single.iter().map(|&k| single[k][r]));
            cand_bags.clear();
            cand_bags.extend(g.cand_bags.iter().map(|&k| bag(k, r)));
            buf.push_candidate(&cand_ids, &cand_bags, &dense[r * d..(r + 1) * d]);
        }
        buf.score(
            scorer,
            &mut ws,
            &mut probs[start * tasks..end * tasks],
            &mut fused[start..end],
        )
        .map_err(|e| e.to_string())?;
        start = end;
    }
    Ok((probs, fused))
}

/// The ROC AUC of `scores` against 0/1 `labels`.
#[pyfunction]
fn auc(
    py: Python<'_>,
    scores: PyReadonlyArray1<'_, f32>,
    labels: PyReadonlyArray1<'_, f32>,
) -> PyResult<f64> {
    let (s, l) = (slice(&scores, "scores")?, slice(&labels, "labels")?);
    py.detach(|| metrics::auc(s, l)).map_err(err)
}

/// Group AUC: `(value, groups used, groups in all)`.
#[pyfunction]
fn gauc(
    py: Python<'_>,
    scores: PyReadonlyArray1<'_, f32>,
    labels: PyReadonlyArray1<'_, f32>,
    groups: PyReadonlyArray1<'_, u64>,
    weight: &str,
) -> PyResult<(f64, usize, usize)> {
    let weight = match weight {
        "impressions" => metrics::GroupWeight::Impressions,
        "clicks" => metrics::GroupWeight::Clicks,
        w => {
            return Err(err(format!(
                "weight {w:?}: choose \"impressions\" or \"clicks\""
            )));
        }
    };
    let (s, l, g) = (
        slice(&scores, "scores")?,
        slice(&labels, "labels")?,
        slice(&groups, "groups")?,
    );
    let r = py.detach(|| metrics::gauc(s, l, g, weight)).map_err(err)?;
    Ok((r.value, r.groups_used, r.groups_total))
}

/// Weighted Recall@K for every K: `([(K, value)], groups used, groups in all)`.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn weighted_recall_at_k(
    py: Python<'_>,
    scores: PyReadonlyArray1<'_, f32>,
    weights: PyReadonlyArray1<'_, f32>,
    groups: PyReadonlyArray1<'_, u64>,
    ks: Vec<usize>,
    averaging: &str,
) -> PyResult<(Vec<(usize, f64)>, usize, usize)> {
    let averaging = match averaging {
        "macro" => metrics::Averaging::Macro,
        "micro" => metrics::Averaging::Micro,
        a => {
            return Err(err(format!(
                "averaging {a:?}: choose \"macro\" or \"micro\""
            )));
        }
    };
    let (s, w, g) = (
        slice(&scores, "scores")?,
        slice(&weights, "weights")?,
        slice(&groups, "groups")?,
    );
    let r = py
        .detach(|| metrics::weighted_recall_at_k(s, w, g, &ks, averaging))
        .map_err(err)?;
    Ok((r.values, r.groups_used, r.groups_total))
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ResflowError", m.py().get_type::<ResflowError>())?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(auc, m)?)?;
    m.add_function(wrap_pyfunction!(gauc, m)?)?;
    m.add_function(wrap_pyfunction!(weighted_recall_at_k, m)?)?;
    Ok(())
}
