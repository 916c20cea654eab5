//! Scoring a whole dataset with a [`Scorer`]: the rows of each batch become requests (one
//! per run of equal group ids when the model has request-level fields, whose values must
//! then be constant within the run; the whole batch otherwise).

use shards::{BatchView, Dataset};

use model::{Bag, ModelError, Request, Scorer, Workspace};

use crate::error::Error;
use crate::network::layout_of;

/// Reusable request buffers.
#[derive(Debug, Default)]
struct Buffers {
    ids: Vec<u32>,
    bags: Vec<(Vec<u64>, Vec<u32>)>,
    request_ids: Vec<u32>,
    request_bags: Vec<(Vec<u64>, Vec<u32>)>,
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
    let mut buf = Buffers::default();
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
            score_rows(
                scorer,
                &mut ws,
                &mut buf,
                &view,
                start,
                end,
                &mut probs[start * tasks..end * tasks],
                &mut fused[start..end],
            )?;
            start = end;
        }
        sink(&probs, &fused, &batch)?;
    }
    Ok(())
}

/// Scores rows `start..end` of `view` as one request.
#[allow(clippy::too_many_arguments)]
fn score_rows(
    scorer: &Scorer,
    ws: &mut Workspace,
    buf: &mut Buffers,
    view: &BatchView<'_>,
    start: usize,
    end: usize,
    probs: &mut [f32],
    fused: &mut [f32],
) -> Result<(), ModelError> {
    let layout = &scorer.model().layout;
    let ns = layout.fields.iter().filter(|f| f.bag.is_none()).count();
    let single = view.single();
    let index = |name: &str| layout.field_index(name).expect("a field of the model");
    let n = end - start;
    let (cand, req) = (scorer.candidate_fields(), scorer.request_fields());
    buf.ids.clear();
    buf.request_ids.clear();
    let cand_single: Vec<usize> = cand.iter().map(|f| index(f)).filter(|&i| i < ns).collect();
    let cand_bags: Vec<usize> = cand.iter().map(|f| index(f)).filter(|&i| i >= ns).collect();
    let req_single: Vec<usize> = req.iter().map(|f| index(f)).filter(|&i| i < ns).collect();
    let req_bags: Vec<usize> = req.iter().map(|f| index(f)).filter(|&i| i >= ns).collect();
    for r in start..end {
        buf.ids
            .extend(cand_single.iter().map(|&k| single[r * ns + k]));
    }
    for &k in &req_single {
        let v = single[start * ns + k];
        if (start..end).any(|r| single[r * ns + k] != v) {
            return Err(ModelError::Request(format!(
                "request-level field {:?} varies within group {}",
                layout.fields[k].name,
                view.group().get(start).copied().unwrap_or(0)
            )));
        }
        buf.request_ids.push(v);
    }
    let fill =
        |out: &mut Vec<(Vec<u64>, Vec<u32>)>, fields: &[usize], rows: std::ops::Range<usize>| {
            out.resize_with(fields.len(), Default::default);
            for (slot, &f) in out.iter_mut().zip(fields) {
                let (offsets, ids) = view.bag(f - ns);
                slot.0.clear();
                slot.1.clear();
                slot.0.push(0);
                for r in rows.clone() {
                    let (a, b) = (
                        (offsets[r] - offsets[0]) as usize,
                        (offsets[r + 1] - offsets[0]) as usize,
                    );
                    slot.1.extend_from_slice(&ids[a..b]);
                    slot.0.push(slot.1.len() as u64);
                }
            }
        };
    fill(&mut buf.bags, &cand_bags, start..end);
    fill(&mut buf.request_bags, &req_bags, start..start + 1);
    let bags: Vec<Bag> = buf
        .bags
        .iter()
        .map(|(o, i)| Bag { offsets: o, ids: i })
        .collect();
    let request_bags: Vec<Bag> = buf
        .request_bags
        .iter()
        .map(|(o, i)| Bag { offsets: o, ids: i })
        .collect();
    let d = layout.dense;
    let request = Request {
        candidates: n,
        ids: &buf.ids,
        bags: &bags,
        dense: &view.dense()[start * d..end * d],
        dense_stride: d,
        request_ids: &buf.request_ids,
        request_bags: &request_bags,
    };
    scorer.score(ws, &request, probs, fused)
}
