//! Checks of a configuration against the data it will train on, made before anything is
//! allocated: the fields it names exist, and the parameters and optimiser state fit in
//! what this process can allocate.
//!
//! The memory check estimates the bytes training needs from the sizes alone. Every
//! embedding table (`vocab x embedding_dim`) is counted five times: its value, Adam's two
//! moments, and the two transient copies training makes (the initial parameters while the
//! trainer is built; the tensors of a checkpoint or an export while they are serialised).
//! The dense parameters are counted six times (the same, and a gradient). The check then
//! asks the allocator for one block of that size (`try_reserve`, which reserves address
//! space without touching it) and frees it at once. Where the block cannot be had (a
//! process limit such as `ulimit -v`, or more than the machine's memory under Linux's
//! default overcommit rule) the configuration is refused with the estimate, instead of
//! the process aborting (or being killed) halfway through initialisation. Linux's default
//! rule lets each block up to the machine's memory be reserved, so the total is also
//! compared with the machine's memory (RAM and swap). Activations and per-thread gradients
//! are left out: they scale with the batch, not with the tables, and are small beside them
//! for every model this project trains.

use crate::config::{ModelConfig, ModelKind};
use crate::error::ModelError;
use crate::layout::InputLayout;

/// Checks `config` against `layout`: task count, `request_fields`, and the memory check.
pub fn check_config_for_layout(
    config: &ModelConfig,
    layout: &InputLayout,
) -> Result<(), ModelError> {
    let mut seen: Vec<&str> = Vec::new();
    for name in &config.request_fields {
        if layout.field_index(name).is_none() {
            return Err(ModelError::Config(format!(
                "request_fields names {name:?}, which is not an input field (the fields are {})",
                layout
                    .fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if seen.contains(&name.as_str()) {
            return Err(ModelError::Config(format!(
                "request_fields names {name:?} twice"
            )));
        }
        seen.push(name);
    }
    if !config.request_fields.is_empty() && config.request_fields.len() == layout.fields.len() {
        return Err(ModelError::Config(
            "request_fields names every field: a candidate would have no features of its own"
                .into(),
        ));
    }
    check_allocatable(config, layout)
}

/// [`check_config_for_layout`] for one of `ranks` processes that share the embedding
/// tables by rows: the memory check counts `1/ranks` of the tables.
pub fn check_config_for_layout_share(
    config: &ModelConfig,
    layout: &InputLayout,
    ranks: usize,
) -> Result<(), ModelError> {
    if ranks <= 1 {
        return check_config_for_layout(config, layout);
    }
    let mut share = layout.clone();
    for f in &mut share.fields {
        f.vocab = f.vocab.div_ceil(ranks as u32);
    }
    check_config_for_layout(config, &share)
}

/// The settings in which `a` and `b` differ, as `path: a vs b` lines (JSON paths such as
/// `hidden` or `optimizer.learning_rate`), leaving out the keys in `ignore`.
pub fn config_differences(a: &ModelConfig, b: &ModelConfig, ignore: &[&str]) -> Vec<String> {
    fn walk(path: String, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    walk(p, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} vs {b}")),
            _ => {}
        }
    }
    let (Ok(x), Ok(y)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return vec!["the configurations cannot be compared".into()];
    };
    let mut out = Vec::new();
    walk(String::new(), &x, &y, &mut out);
    out.retain(|d| !ignore.iter().any(|k| d.starts_with(&format!("{k}:"))));
    out
}

/// Parameters of an MLP from `input` through `widths`, counting each layer's weight, bias,
/// PReLU slope and BatchNorm scale and shift; and the last width.
fn mlp(input: u128, widths: &[usize]) -> (u128, u128) {
    let (mut count, mut width) = (0u128, input);
    for &w in widths {
        let w = w as u128;
        count += width * w + 4 * w;
        width = w;
    }
    (count, width)
}

/// Dense parameters of `config` for an input of `input` floats (a close lower bound: the
/// gates' and attention's small matrices are counted where they scale with the widths).
pub fn dense_parameter_estimate(config: &ModelConfig, input: usize) -> u128 {
    let (input, tasks) = (input as u128, config.tasks.len() as u128);
    let towers = |from: u128, widths: &[usize]| {
        let (c, last) = mlp(from, widths);
        tasks * (c + last + 1)
    };
    match &config.model {
        ModelKind::Resflow | ModelKind::Independent | ModelKind::Esmm | ModelKind::Aitm(_) => {
            towers(input, &config.hidden)
        }
        // A third tower (imputation, counterfactual) beside the two, for training.
        ModelKind::Escm2Ipw(_) => towers(input, &config.hidden),
        ModelKind::Escm2Dr(_) | ModelKind::Dcmt(_) => towers(input, &config.hidden) * 3 / 2,
        ModelKind::SharedBottom(c) => {
            let (bottom, last) = mlp(input, &c.bottom);
            bottom + towers(last, &c.tower)
        }
        ModelKind::Mmoe(c) => {
            let experts = c.experts as u128;
            let (expert, last) = mlp(input, &c.expert_hidden);
            experts * expert + tasks * input * experts + towers(last, &c.tower)
        }
        ModelKind::Ple(c) => {
            let per_level = c.task_experts as u128 * tasks + c.shared_experts as u128;
            let (first, last) = mlp(input, &c.expert_hidden);
            let (later, _) = mlp(last, &c.expert_hidden);
            per_level * (first + (c.levels as u128).saturating_sub(1) * later)
                + towers(last, &c.tower)
        }
    }
}

/// The bytes training `config` on `layout` needs at least (see the module's notes).
pub fn training_bytes_estimate(config: &ModelConfig, layout: &InputLayout) -> u128 {
    let dim = config.embedding_dim as u128;
    let embedding: u128 = layout.fields.iter().map(|f| f.vocab as u128 * dim).sum();
    let dense = dense_parameter_estimate(config, layout.input_width(config.embedding_dim));
    4 * (5 * embedding + 6 * dense)
}

/// The machine's memory (RAM and swap) in bytes, where the system tells (Linux's
/// `/proc/meminfo`).
pub fn machine_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u128> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
}

/// Refuses a model whose parameters and optimiser state cannot be allocated: more than the
/// machine's memory, or a block this process cannot reserve.
pub fn check_allocatable(config: &ModelConfig, layout: &InputLayout) -> Result<(), ModelError> {
    let bytes = training_bytes_estimate(config, layout);
    let fits_machine = machine_memory().is_none_or(|m| bytes <= m);
    if fits_machine && usize::try_from(bytes).is_ok_and(can_allocate) {
        return Ok(());
    }
    Err(ModelError::Config(format!(
        "the model needs at least {:.1} GiB for its parameters and optimiser state \
         (embedding_dim {}, hidden {:?}, vocabularies {}), more than this process can \
         allocate; use smaller widths or vocabularies",
        bytes as f64 / (1u64 << 30) as f64,
        config.embedding_dim,
        config.hidden,
        layout
            .fields
            .iter()
            .map(|f| f.vocab)
            .max()
            .map_or("none".to_string(), |v| format!("up to {v}")),
    )))
}

/// The bytes a scoring workspace for `candidates` candidates needs at least: the input rows,
/// and for each task every hidden layer's activations and the logit.
pub fn workspace_bytes_estimate(model: &crate::Model, candidates: usize) -> u128 {
    let c = &model.config;
    let widths: u128 = match &c.model {
        ModelKind::Resflow
        | ModelKind::Independent
        | ModelKind::Esmm
        | ModelKind::Aitm(_)
        | ModelKind::Escm2Ipw(_)
        | ModelKind::Escm2Dr(_)
        | ModelKind::Dcmt(_) => {
            c.hidden.iter().map(|&w| w as u128).sum::<u128>() * c.tasks.len() as u128
        }
        ModelKind::SharedBottom(b) => b.bottom.iter().chain(&b.tower).map(|&w| w as u128).sum(),
        ModelKind::Mmoe(m) => m
            .expert_hidden
            .iter()
            .chain(&m.tower)
            .map(|&w| w as u128)
            .sum(),
        ModelKind::Ple(p) => p
            .expert_hidden
            .iter()
            .chain(&p.tower)
            .map(|&w| w as u128)
            .sum(),
    };
    let input = model.layout.input_width(c.embedding_dim) as u128;
    4 * candidates as u128 * (input + widths + c.tasks.len() as u128)
}

/// Whether one block of `bytes` can be reserved now (the block is freed at once).
pub fn can_allocate(bytes: usize) -> bool {
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Field;

    fn layout(fields: usize, vocab: u32) -> InputLayout {
        InputLayout {
            fields: (0..fields)
                .map(|i| Field {
                    name: format!("f{i}"),
                    vocab,
                    bag: None,
                })
                .collect(),
            dense: 3,
            tasks: vec!["click".into(), "conversion".into()],
        }
    }

    #[test]
    fn estimate_matches_the_parameter_count_of_resflow() {
        let (config, l) = (ModelConfig::default(), layout(4, 100));
        let params = crate::Model::init(config.clone(), l.clone()).unwrap();
        let embedding = 4 * 100 * 32;
        let dense = params.parameter_count() as u128 - embedding;
        let estimate = dense_parameter_estimate(&config, l.input_width(32));
        // Within a few percent: BatchNorm of the input and similar small vectors aside.
        assert!(
            estimate <= dense && estimate * 100 >= dense * 95,
            "{estimate} vs {dense}"
        );
    }

    #[test]
    fn huge_widths_and_vocabularies_are_errors_not_aborts() {
        for json in [r#"{"hidden":[65536,65536]}"#, r#"{"embedding_dim":65536}"#] {
            let config = ModelConfig::from_json(json).unwrap();
            let e = check_allocatable(&config, &layout(30, 1_000_000))
                .unwrap_err()
                .to_string();
            assert!(e.contains("GiB") && e.contains("allocate"), "{json}: {e}");
        }
        assert!(check_allocatable(&ModelConfig::default(), &layout(4, 100)).is_ok());
        assert!(!can_allocate(usize::MAX / 2));
    }

    #[test]
    fn config_differences_name_each_setting() {
        let a = ModelConfig::default();
        let b = ModelConfig::from_json(
            r#"{"hidden":[8],"epochs":3,"optimizer":{"learning_rate":0.01}}"#,
        )
        .unwrap();
        let d = config_differences(&a, &b, &["epochs"]);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].starts_with("hidden: [128,64] vs [8]"), "{d:?}");
        assert!(d[1].starts_with("optimizer.learning_rate:"), "{d:?}");
        assert!(config_differences(&a, &a, &[]).is_empty());
    }

    #[test]
    fn request_fields_must_name_distinct_input_fields() {
        let l = layout(3, 10);
        let mut c = ModelConfig {
            request_fields: vec!["nope".into()],
            ..ModelConfig::default()
        };
        let e = check_config_for_layout(&c, &l).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("f0, f1, f2"), "{e}");
        c.request_fields = vec!["f0".into(), "f0".into()];
        assert!(check_config_for_layout(&c, &l).is_err());
        c.request_fields = vec!["f0".into(), "f1".into(), "f2".into()];
        assert!(check_config_for_layout(&c, &l).is_err());
        c.request_fields = vec!["f1".into()];
        assert!(check_config_for_layout(&c, &l).is_ok());
    }
}
