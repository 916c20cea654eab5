//! The graph's inputs: the ids of every field and the dense features, turned into the
//! concatenated input the head reads, with a per-candidate check of every id and length.
//!
//! ```text
//! single-valued fields  ids/<f> [N]  --Concat, Reshape [S, N], Transpose--> [N, S]
//!                       + row offsets of one combined table  --Gather--> [N, S, dim] --> [N, S dim]
//! bag f                 ids/<f> [N, L], lengths/<f> [N]
//!                       position p < length  and  0 <= id < vocab  -> the id, else row `vocab`
//!                       (a zero row appended to the table)  --Gather--> [N, L, dim] --ReduceSum--> [N, dim]
//!                       (mean pooling: divided by max(length, 1))
//! dense                 dense [N, D]
//! x                     Concat(singles, bag_1, ..., bag_B, dense)      graph column order
//! ```
//!
//! Ids outside `0..vocab` and lengths outside `0..=L` never reach a Gather (a runtime's
//! Gather reads negative ids from the end of the table, and some refuse the whole batch for
//! one out-of-range id): they are counted per candidate, and a candidate with any of them,
//! or with a non-finite dense feature (IsNaN, IsInf), gets NaN probabilities (see `lib.rs`). Valid ids
//! padded past a bag's length are ignored whatever they hold.

use model::{Model, Pooling};

use crate::proto::{Attribute, DataType, Dim, ValueInfo};
use crate::record::Builder;

/// The name of a field's ids input.
pub fn ids_name(field: &str) -> String {
    format!("ids/{field}")
}

/// The name of a bag's lengths input.
pub fn lengths_name(field: &str) -> String {
    format!("lengths/{field}")
}

/// The name of the dense features input.
pub const DENSE: &str = "dense";

/// The name of the candidate dimension.
pub const CANDIDATES: &str = "candidates";

/// The concatenated input, and what the checks found.
pub(crate) struct Assembled {
    /// The graph inputs, in order.
    pub inputs: Vec<ValueInfo>,
    /// The input concatenation, `N x (F dim + D)`, in graph column order.
    pub x: String,
    /// `order[j]`: the graph column of layout column `j`.
    pub order: Vec<usize>,
    /// `N x 1`: the count of bad ids, lengths and non-finite dense features of each
    /// candidate.
    pub bad: Option<String>,
}

const FLOAT: i64 = DataType::Float as i64;

fn candidates() -> Dim {
    Dim::Named(CANDIDATES.into())
}

/// Records the inputs of `model` and the concatenated input on `b`.
pub(crate) fn assemble(b: &mut Builder, model: &Model) -> Assembled {
    let layout = &model.layout;
    let dim = model.config.embedding_dim;
    let singles: Vec<usize> = (0..layout.fields.len())
        .filter(|&i| layout.fields[i].bag.is_none())
        .collect();
    let bags: Vec<usize> = (0..layout.fields.len())
        .filter(|&i| layout.fields[i].bag.is_some())
        .collect();

    // Graph inputs in layout order: each field's ids (and a bag's lengths), then dense.
    let mut inputs = Vec::new();
    for (i, f) in layout.fields.iter().enumerate() {
        if f.bag.is_none() {
            inputs.push(ValueInfo {
                name: ids_name(&f.name),
                data_type: DataType::Int64,
                dims: vec![candidates()],
                doc: format!(
                    "field {:?}: one id per candidate, below {}",
                    f.name, f.vocab
                ),
            });
        } else {
            inputs.push(ValueInfo {
                name: ids_name(&f.name),
                data_type: DataType::Int64,
                // A plain identifier (runtimes parse dimension names as symbols).
                dims: vec![candidates(), Dim::Named(format!("bag_length_{i}"))],
                doc: format!(
                    "bag {:?}: each candidate's ids, padded to the longest (padding ignored), below {}",
                    f.name, f.vocab
                ),
            });
            inputs.push(ValueInfo {
                name: lengths_name(&f.name),
                data_type: DataType::Int64,
                dims: vec![candidates()],
                doc: format!("bag {:?}: how many ids each candidate has", f.name),
            });
        }
    }
    if layout.dense > 0 {
        inputs.push(ValueInfo {
            name: DENSE.into(),
            data_type: DataType::Float,
            dims: vec![candidates(), Dim::Fixed(layout.dense as i64)],
            doc: "dense features, standardised as in training (the dataset's schema)".into(),
        });
    }

    // Graph column of each layout column.
    let mut order = vec![0usize; layout.input_width(dim)];
    let rank = |list: &[usize], i: usize| list.iter().position(|&k| k == i);
    for i in 0..layout.fields.len() {
        let base = match rank(&singles, i) {
            Some(r) => r * dim,
            None => (singles.len() + rank(&bags, i).expect("a bag")) * dim,
        };
        for k in 0..dim {
            order[i * dim + k] = base + k;
        }
    }
    for d in 0..layout.dense {
        order[layout.fields.len() * dim + d] = (singles.len() + bags.len()) * dim + d;
    }

    let mut parts = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let zero = b.i64("const/zero", vec![], &[0]);
    let axis1 = b.i64("axes", vec![1], &[1]);

    if !singles.is_empty() {
        let s = singles.len();
        let names: Vec<String> = singles
            .iter()
            .map(|&i| ids_name(&layout.fields[i].name))
            .collect();
        let ids = if s == 1 {
            b.node("Unsqueeze", &[&names[0], &axis1], vec![])
        } else {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let flat = b.node("Concat", &refs, vec![Attribute::Int("axis", 0)]);
            let shape = b.i64("shape", vec![2], &[s as i64, -1]);
            let by_field = b.node("Reshape", &[&flat, &shape], vec![]);
            b.node(
                "Transpose",
                &[&by_field],
                vec![Attribute::Ints("perm", vec![1, 0])],
            )
        };
        // One table for every single-valued field, each field's rows at its offset.
        let vocab: Vec<i64> = singles
            .iter()
            .map(|&i| layout.fields[i].vocab as i64)
            .collect();
        let mut offsets = Vec::with_capacity(s);
        let mut total = 0i64;
        for v in &vocab {
            offsets.push(total);
            total += v;
        }
        let vocab_c = b.i64("single/vocab", vec![s as i64], &vocab);
        let offsets_c = b.i64("single/offsets", vec![s as i64], &offsets);
        let neg = b.node("Less", &[&ids, &zero], vec![]);
        let over = b.node("GreaterOrEqual", &[&ids, &vocab_c], vec![]);
        let out_of_range = b.node("Or", &[&neg, &over], vec![]);
        let safe = b.node("Where", &[&out_of_range, &zero, &ids], vec![]);
        let rows = b.node("Add", &[&safe, &offsets_c], vec![]);
        let table = b.name("embedding/single");
        b.initializers.push(crate::proto::Tensor::f32_rows(
            table.clone(),
            vec![total, dim as i64],
            singles.iter().flat_map(|&i| {
                let t = &model.embeddings[i];
                (0..t.rows()).map(move |r| t.row(r))
            }),
        ));
        let e = b.node("Gather", &[&table, &rows], vec![Attribute::Int("axis", 0)]);
        let shape = b.i64("shape", vec![2], &[0, (s * dim) as i64]);
        parts.push(b.node("Reshape", &[&e, &shape], vec![]));
        let f = b.node("Cast", &[&out_of_range], vec![Attribute::Int("to", FLOAT)]);
        bad.push(b.node(
            "ReduceSum",
            &[&f, &axis1],
            vec![Attribute::Int("keepdims", 1)],
        ));
    }

    for &i in &bags {
        let field = &layout.fields[i];
        let (ids, lengths) = (ids_name(&field.name), lengths_name(&field.name));
        let vocab = field.vocab as i64;
        // Positions 0..L of the padded ids, and which of them hold an id of the bag.
        let one = b.i64("const/one", vec![], &[1]);
        let width = b.node(
            "Shape",
            &[&ids],
            vec![Attribute::Int("start", 1), Attribute::Int("end", 2)],
        );
        let axis0 = b.i64("axes", vec![1], &[0]);
        let width = b.node("Squeeze", &[&width, &axis0], vec![]);
        // One more column, never within a length (so it reads the zero row): no reduction
        // below runs over an empty axis, which not every runtime handles, when L is 0.
        let pads = b.i64("pads", vec![4], &[0, 0, 0, 1]);
        let ids = b.node("Pad", &[&ids, &pads, &zero], vec![]);
        let padded_width = b.node("Add", &[&width, &one], vec![]);
        let positions = b.node("Range", &[&zero, &padded_width, &one], vec![]);
        let len2 = b.node("Unsqueeze", &[&lengths, &axis1], vec![]);
        let within = b.node("Less", &[&positions, &len2], vec![]);
        let v = b.i64("const/vocab", vec![], &[vocab]);
        let nonneg = b.node("GreaterOrEqual", &[&ids, &zero], vec![]);
        let below = b.node("Less", &[&ids, &v], vec![]);
        let in_range = b.node("And", &[&nonneg, &below], vec![]);
        let used = b.node("And", &[&within, &in_range], vec![]);
        // Unused positions read the zero row appended at `vocab`.
        let safe = b.node("Where", &[&used, &ids, &v], vec![]);
        let table = b.name(&format!("embedding/{}", field.name));
        let t = &model.embeddings[i];
        let zeros = vec![0.0f32; dim];
        b.initializers.push(crate::proto::Tensor::f32_rows(
            table.clone(),
            vec![vocab + 1, dim as i64],
            (0..t.rows())
                .map(|r| t.row(r))
                .chain(std::iter::once(zeros.as_slice())),
        ));
        let e = b.node("Gather", &[&table, &safe], vec![Attribute::Int("axis", 0)]);
        let mut pooled = b.node(
            "ReduceSum",
            &[&e, &axis1],
            vec![Attribute::Int("keepdims", 0)],
        );
        if field.bag == Some(Pooling::Mean) {
            let count = b.node("Cast", &[&lengths], vec![Attribute::Int("to", FLOAT)]);
            let one_f = b.scalar(1.0);
            let count = b.node("Max", &[&count, &one_f], vec![]);
            let count = b.node("Unsqueeze", &[&count, &axis1], vec![]);
            pooled = b.node("Div", &[&pooled, &count], vec![]);
        }
        parts.push(pooled);
        // Bad ids at used positions, and lengths outside 0..=L.
        let outside = b.node("Not", &[&in_range], vec![]);
        let bad_ids = b.node("And", &[&within, &outside], vec![]);
        let f = b.node("Cast", &[&bad_ids], vec![Attribute::Int("to", FLOAT)]);
        bad.push(b.node(
            "ReduceSum",
            &[&f, &axis1],
            vec![Attribute::Int("keepdims", 1)],
        ));
        let short = b.node("Less", &[&lengths, &zero], vec![]);
        let long = b.node("Greater", &[&lengths, &width], vec![]);
        let bad_len = b.node("Or", &[&short, &long], vec![]);
        let f = b.node("Cast", &[&bad_len], vec![Attribute::Int("to", FLOAT)]);
        bad.push(b.node("Unsqueeze", &[&f, &axis1], vec![]));
    }

    if layout.dense > 0 {
        parts.push(DENSE.to_string());
        let nan = b.node("IsNaN", &[DENSE], vec![]);
        let inf = b.node("IsInf", &[DENSE], vec![]);
        let bad_dense = b.node("Or", &[&nan, &inf], vec![]);
        let f = b.node("Cast", &[&bad_dense], vec![Attribute::Int("to", FLOAT)]);
        bad.push(b.node(
            "ReduceSum",
            &[&f, &axis1],
            vec![Attribute::Int("keepdims", 1)],
        ));
    }

    let x = if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        b.node("Concat", &refs, vec![Attribute::Int("axis", 1)])
    };
    let bad = bad
        .into_iter()
        .reduce(|acc, x| b.node("Add", &[&acc, &x], vec![]));
    Assembled {
        inputs,
        x,
        order,
        bad,
    }
}
