//! The task topology of ResFlow: which task's tower feeds which, at the hidden layers and
//! at the logits, and which tower layers link at all.
//!
//! ```json
//! "residual": {"hidden": true, "logits": true, "monotone": false},
//! "topology": {
//!   "parents": {"order": {"hidden": ["click"], "logits": ["click", "cart"]}},
//!   "layers": [true, false]
//! }
//! ```
//!
//! A task not listed under `parents` (or a list left out) takes the previous task as its
//! one parent, as in the paper, so `{}` is the plain chain; an empty list means no parent.
//! With several parents, their outputs are all added:
//!
//! ```text
//! o_t^l = BN(act(o_t^(l-1) W + b)) + sum_{p in hidden(t)} o_p^l      (layers[l] on)
//! z_t   = o_t^L w + c + sum_{p in logits(t)} z_p
//! ```
//!
//! `residual.hidden` / `residual.logits` stay the master switches. [`Topology::resolve`]
//! turns the configuration into [`Links`] (task indices and an evaluation order in which
//! every parent comes before its children) or a configuration error: unknown tasks,
//! repeated parents, cycles (in the union of both kinds of link), a switch list of the
//! wrong length, parents named for a kind of link that is off, and the monotone variant
//! without logit links or with several logit parents (its guarantee `p_t <= p_parent`
//! holds for one parent only).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which tasks feed which (see the module documentation). The default is the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Per task name, its parents; tasks not listed take the previous task.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parents: BTreeMap<String, Parents>,
    /// One switch per hidden layer of the towers: which layers' hidden links are on.
    /// Empty: every layer links.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<bool>,
}

/// The parents of one task. `None`: the previous task (none for the first task).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Parents {
    /// Tasks whose hidden outputs are added to this task's, layer by layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<String>>,
    /// Tasks whose logits are added to this task's logit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<String>>,
}

impl Topology {
    /// The default chain.
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The links of `tasks` (names in task order) with towers of `layers` hidden layers,
    /// under the master switches `hidden`, `logits` and `monotone`; a message naming what
    /// is wrong otherwise.
    pub fn resolve(
        &self,
        tasks: &[&str],
        layers: usize,
        switches: (bool, bool, bool),
    ) -> Result<Links, String> {
        let (hidden_on, logits_on, monotone) = switches;
        let n = tasks.len();
        let index = |name: &str| tasks.iter().position(|t| *t == name);
        let list = || tasks.join(", ");
        for name in self.parents.keys() {
            if index(name).is_none() {
                return Err(format!(
                    "topology.parents names {name:?}, which is not a task (the tasks are {})",
                    list()
                ));
            }
        }
        if !self.layers.is_empty() && self.layers.len() != layers {
            return Err(format!(
                "topology.layers has {} switches for {layers} hidden layers",
                self.layers.len()
            ));
        }
        if !self.layers.is_empty() && !hidden_on {
            return Err("topology.layers switches hidden links, but residual.hidden is off".into());
        }
        if monotone && !logits_on {
            return Err(
                "residual.monotone bounds the logit links, but residual.logits is off".into(),
            );
        }
        let mut links = Links {
            order: Vec::with_capacity(n),
            hidden: vec![Vec::new(); n],
            logits: vec![Vec::new(); n],
            layers: if self.layers.is_empty() {
                vec![hidden_on; layers]
            } else {
                self.layers.clone()
            },
            monotone,
        };
        for (t, &name) in tasks.iter().enumerate() {
            let given = self.parents.get(name);
            for (kind, on, chosen, out) in [
                (
                    "hidden",
                    hidden_on,
                    given.and_then(|p| p.hidden.as_ref()),
                    &mut links.hidden[t],
                ),
                (
                    "logit",
                    logits_on,
                    given.and_then(|p| p.logits.as_ref()),
                    &mut links.logits[t],
                ),
            ] {
                match chosen {
                    None if on && t > 0 => out.push(t - 1),
                    None => {}
                    Some(names) if !on && !names.is_empty() => {
                        return Err(format!(
                            "task {name:?} names {kind} parents, but residual.{} is off",
                            if kind == "hidden" { "hidden" } else { "logits" }
                        ));
                    }
                    Some(names) => {
                        for p in names {
                            let Some(i) = index(p) else {
                                return Err(format!(
                                    "task {name:?}: {kind} parent {p:?} is not a task (the tasks are {})",
                                    list()
                                ));
                            };
                            if i == t {
                                return Err(format!(
                                    "task {name:?} is its own {kind} parent: the links form a cycle"
                                ));
                            }
                            if out.contains(&i) {
                                return Err(format!(
                                    "task {name:?} names {kind} parent {p:?} twice"
                                ));
                            }
                            out.push(i);
                        }
                    }
                }
            }
            if monotone && links.logits[t].len() > 1 {
                return Err(format!(
                    "task {name:?} has {} logit parents; the monotone variant needs one at most \
                     (p_t <= p_parent holds for a single parent)",
                    links.logits[t].len()
                ));
            }
        }
        if monotone && n > 1 && links.logits.iter().all(Vec::is_empty) {
            return Err("residual.monotone is on, but no task has a logit parent".into());
        }
        links.order = order(&links, tasks)?;
        Ok(links)
    }
}

/// A resolved topology: task indices, in the configuration's task order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The tasks in the order their towers are computed: every parent before its children
    /// (the task order itself for the chain).
    pub order: Vec<usize>,
    /// Per task, the tasks whose hidden outputs it adds.
    pub hidden: Vec<Vec<usize>>,
    /// Per task, the tasks whose logits it adds.
    pub logits: Vec<Vec<usize>>,
    /// Per hidden layer, whether its hidden links are on.
    pub layers: Vec<bool>,
    /// The monotone variant: `z_t = z_parent + min(own_t, 0)`.
    pub monotone: bool,
}

impl Links {
    /// No links at all (independent towers and every kind without residual links).
    pub fn none(tasks: usize, layers: usize) -> Self {
        Self {
            order: (0..tasks).collect(),
            hidden: vec![Vec::new(); tasks],
            logits: vec![Vec::new(); tasks],
            layers: vec![false; layers],
            monotone: false,
        }
    }
}

/// Kahn's algorithm over the union of both kinds of link, always taking the first ready
/// task in task order (so the chain keeps its order); the cycle, named, when there is one.
fn order(links: &Links, tasks: &[&str]) -> Result<Vec<usize>, String> {
    let n = tasks.len();
    let parents = |t: usize| links.hidden[t].iter().chain(&links.logits[t]);
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n).find(|&t| !done[t] && parents(t).all(|&p| done[p]));
        match ready {
            Some(t) => {
                done[t] = true;
                order.push(t);
            }
            None => {
                // Every task left waits on another task left: walk parents until one
                // repeats, which closes a cycle.
                let mut path = vec![(0..n).find(|&t| !done[t]).expect("a task is left")];
                loop {
                    let last = *path.last().expect("a non-empty path");
                    let next = *parents(last)
                        .find(|&&p| !done[p])
                        .expect("a waiting task has a waiting parent");
                    if let Some(at) = path.iter().position(|&t| t == next) {
                        // The path runs child -> parent; a feed runs parent -> child.
                        let mut cycle: Vec<usize> = path[at..].iter().rev().copied().collect();
                        let first = (0..cycle.len())
                            .min_by_key(|&i| cycle[i])
                            .expect("a non-empty cycle");
                        cycle.rotate_left(first);
                        cycle.push(cycle[0]);
                        let cycle: Vec<&str> = cycle.iter().map(|&t| tasks[t]).collect();
                        return Err(format!(
                            "the task links form a cycle: {} (each feeds the next)",
                            cycle.join(" -> ")
                        ));
                    }
                    path.push(next);
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(json: &str) -> Topology {
        serde_json::from_str(json).unwrap()
    }

    const TASKS: [&str; 3] = ["click", "cart", "order"];

    #[test]
    fn the_default_is_the_chain() {
        let l = Topology::default()
            .resolve(&TASKS, 2, (true, true, false))
            .unwrap();
        assert_eq!(l.order, vec![0, 1, 2]);
        assert_eq!(l.hidden, vec![vec![], vec![0], vec![1]]);
        assert_eq!(l.logits, vec![vec![], vec![0], vec![1]]);
        assert_eq!(l.layers, vec![true, true]);
        let off = Topology::default()
            .resolve(&TASKS, 2, (false, true, false))
            .unwrap();
        assert_eq!(off.hidden, vec![Vec::<usize>::new(); 3]);
        assert_eq!(off.layers, vec![false, false]);
        assert!(Topology::default().is_default());
        assert_eq!(serde_json::to_string(&Topology::default()).unwrap(), "{}");
    }

    #[test]
    fn several_parents_and_a_reordered_graph() {
        // click takes cart's hidden outputs, so cart (later in task order) is computed
        // first; order adds both logits and only the second layer links.
        let t = topo(
            r#"{"parents": {"click": {"hidden": ["cart"], "logits": []},
                            "cart": {"hidden": [], "logits": []},
                            "order": {"logits": ["click", "cart"]}},
                "layers": [false, true]}"#,
        );
        let l = t.resolve(&TASKS, 2, (true, true, false)).unwrap();
        assert_eq!(l.order, vec![1, 0, 2]);
        assert_eq!(l.hidden, vec![vec![1], vec![], vec![1]]);
        assert_eq!(l.logits, vec![vec![], vec![], vec![0, 1]]);
        assert_eq!(l.layers, vec![false, true]);
    }

    #[test]
    fn invalid_graphs_are_clear_errors() {
        for (json, switches, needle) in [
            (
                r#"{"parents": {"clik": {}}}"#,
                (true, true, false),
                "\"clik\", which is not a task",
            ),
            (
                r#"{"parents": {"cart": {"logits": ["ordre"]}}}"#,
                (true, true, false),
                "logit parent \"ordre\" is not a task",
            ),
            (
                r#"{"parents": {"click": {"logits": ["order"]}}}"#,
                (true, true, false),
                "cycle: click -> cart -> order -> click",
            ),
            (
                r#"{"parents": {"click": {"hidden": ["cart"]}}}"#,
                (true, true, false),
                "cycle: click -> cart -> click",
            ),
            (
                r#"{"parents": {"cart": {"hidden": ["cart"]}}}"#,
                (true, true, false),
                "its own hidden parent",
            ),
            (
                r#"{"parents": {"order": {"logits": ["click", "click"]}}}"#,
                (true, true, false),
                "twice",
            ),
            (
                r#"{"layers": [true]}"#,
                (true, true, false),
                "1 switches for 2",
            ),
            (
                r#"{"layers": [true, false]}"#,
                (false, true, false),
                "residual.hidden is off",
            ),
            (
                r#"{"parents": {"cart": {"logits": ["click"]}}}"#,
                (true, false, false),
                "residual.logits is off",
            ),
            ("{}", (true, false, true), "monotone"),
            (
                r#"{"parents": {"order": {"logits": ["click", "cart"]}}}"#,
                (true, true, true),
                "the monotone variant needs one at most",
            ),
            (
                r#"{"parents": {"cart": {"logits": []}, "order": {"logits": []}}}"#,
                (true, true, true),
                "no task has a logit parent",
            ),
        ] {
            let err = topo(json).resolve(&TASKS, 2, switches).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let unknown = serde_json::from_str::<Topology>(r#"{"parent": {}}"#).unwrap_err();
        assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    }
}
