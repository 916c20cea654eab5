//! Scoring a whole dataset with a [`Scorer`]: the rows of each batch become requests (one
//! per run of equal group ids when the model has request-level fields, whose values must
//! then be constant within the run; the whole batch otherwise).

use shards::{BatchView, Dataset};

use model::{ModelError, RequestBuffers, Scorer};

use crate::error::Error;
use crate::network::layout_of;

/// Where each of the scorer's field groups sits in a batch: the single-valued fields'
/// columns and the bags' indices.
#[derive(Debug, Default)]
struct Columns {
    cand_single: Vec<usize>,
    cand_bags: Vec<usize>,
    req_single: Vec<usize>,
    req_bags: Vec<usize>,
    /// Names of the single-valued request fields (for errors).
    req_names: Vec<String>,
    dense: usize,
}

impl Columns {
    fn new(scorer: &Scorer, ns: usize) -> Self {
        let layout = &scorer.model().layout;
        let index = |name: &&str| layout.field_index(name).expect("a field of the model");
        let (cand, req) = (scorer.candidate_fields(), scorer.request_fields());
        let single = |v: &[&str]| v.iter().map(index).filter(|&i| i < ns).collect();
        let bags = |v: &[&str]| {
            v.iter()
                .map(index)
                .filter(|&i| i >= ns)
                .map(|i| i - ns)
                .collect()
        };
        Self {
            cand_single: single(&cand),
            cand_bags: bags(&cand),
            req_single: single(&req),
            req_bags: bags(&req),
            req_names: single(&req)
                .into_iter()
                .map(|i: usize| layout.fields[i].name.clone())
                .collect(),
            dense: layout.dense,
        }
    }
}

/// Scores every row of `data` in storage order; `sink` receives, per batch, the
/// `rows x tasks` probabilities, the `rows` fused scores and the batch.
pub fn score_dataset(
    scorer: &Scorer,
    data: &Dataset,
    mut sink: impl FnMut(&[f32], &[f32], &shards::Batch) -> Result<(), Error>,
) -> Result<(), Error> {
    let layout = layout_of(data.schema());
    let model = &scorer.model().layout;
    if layout.tasks != model.tasks
        || layout.dense != model.dense
        || layout.fields.len() != model.fields.len()
    {
        return Err(ModelError::Layout(
            "the dataset's schema does not match the model's inputs".into(),
        )
        .into());
    }
    for (a, b) in layout.fields.iter().zip(&model.fields) {
        if a.name != b.name || a.bag.is_some() != b.bag.is_some() {
            return Err(ModelError::Layout(format!(
                "dataset field {:?} where the model expects {:?}",
                a.name, b.name
            ))
            .into());
        }
    }
    let has_request = !scorer.request_fields().is_empty();
    let tasks = scorer.tasks();
    let mut ws = scorer.workspace(8192);
    let mut buf = RequestBuffers::new(scorer);
    let ns = model.fields.iter().filter(|f| f.bag.is_none()).count();
    let columns = Columns::new(scorer, ns);
    let mut ids = Vec::new();
    let (mut probs, mut fused) = (Vec::new(), Vec::new());
    let mut batches = data.batches(8192, None);
    let mut batch = data.new_batch();
    while batches.next_into(&mut batch) {
        probs.resize(batch.rows * tasks, 0.0);
        fused.resize(batch.rows, 0.0);
        let view = batch.view();
        let mut start = 0;
        while start < batch.rows {
            let end = if has_request && !batch.group.is_empty() {
                let g = batch.group[start];
                start + batch.group[start..].iter().take_while(|&&x| x == g).count()
            } else {
                batch.rows
            };
            fill(&mut buf, &columns, &view, start, end, ns, &mut ids)?;
            buf.score(
                scorer,
                &mut ws,
                &mut probs[start * tasks..end * tasks],
                &mut fused[start..end],
            )?;
            start = end;
        }
        sink(&probs, &fused, &batch)?;
    }
    Ok(())
}

/// Rows `start..end` of `view` as one request in `buf`; the request-level fields must
/// be constant over them.
fn fill(
    buf: &mut RequestBuffers,
    c: &Columns,
    view: &BatchView<'_>,
    start: usize,
    end: usize,
    ns: usize,
    ids: &mut Vec<u32>,
) -> Result<(), ModelError> {
    let single = view.single();
    let d = c.dense;
    buf.clear();
    ids.clear();
    for (&k, name) in c.req_single.iter().zip(&c.req_names) {
        let v = single[start * ns + k];
        if (start..end).any(|r| single[r * ns + k] != v) {
            return Err(ModelError::Request(format!(
                "request-level field {name:?} varies within group {}",
                view.group().get(start).copied().unwrap_or(0)
            )));
        }
        ids.push(v);
    }
    let row_bag = |k: usize, r: usize| {
        let (offsets, all) = view.bag(k);
        let (a, b) = (
            (offsets[r] - offsets[0]) as usize,
            (offsets[r + 1] - offsets[0]) as usize,
        );
        &all[a..b]
    };
    let req_bags: Vec<&[u32]> = c.req_bags.iter().map(|&k| row_bag(k, start)).collect();
    buf.set_request(ids, &req_bags);
    let mut cand_bags: Vec<&[u32]> = Vec::with_capacity(c.cand_bags.len());
    for r in start..end {
        ids.clear();
        ids.extend(c.cand_single.iter().map(|&k| single[r * ns + k]));
        cand_bags.clear();
        cand_bags.extend(c.cand_bags.iter().map(|&k| row_bag(k, r)));
        buf.push_candidate(ids, &cand_bags, &view.dense()[r * d..(r + 1) * d]);
    }
    Ok(())
}

/// The evaluation of an exported model on `data` through the scorer (what a service would
/// rank), with the model's tasks and fusion and the list metrics of `list`, its GEMMs in
/// `precision`.
pub fn evaluate_model(
    model: &model::Model,
    data: &Dataset,
    list: &crate::ListOptions,
    precision: model::Precision,
) -> Result<metrics::EvalReport, Error> {
    let mut config = metrics::EvalConfig::new(model.layout.tasks.clone());
    config.fusion_weights = model.config.fusion_weights();
    config.fusion = model.config.fusion.kind;
    list.apply(&mut config, data.schema())?;
    let scorer = Scorer::with_precision(model.clone(), precision)?;
    let mut ev = metrics::StreamingEvaluator::new(config)?;
    let mut feed = crate::EvalFeeder::new(data.schema(), ev.config())?;
    score_dataset(&scorer, data, |probs, _, batch| {
        feed.push(&mut ev, probs, batch)
    })?;
    Ok(ev.report()?)
}
