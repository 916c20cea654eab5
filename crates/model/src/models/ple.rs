//! PLE, Progressive Layered Extraction (Tang et al., RecSys 2020): customised gate control
//! (task-specific experts next to shared ones) stacked in levels.
//!
//! ```text
//! level j, inputs u_t (per task) and u_s (shared); at level 0 all are x:
//!   task experts   e_{t,k} = expert_{j,t,k}(u_t)         k = 1..K
//!   shared experts s_k     = expert_{j,s,k}(u_s)         k = 1..S
//!   u_t <- mix([e_{t,1..K}, s_{1..S}], softmax(u_t G_{j,t}))
//!   u_s <- mix([e_{1..T,1..K}, s_{1..S}], softmax(u_s G_{j,s}))    (not after the last level)
//! z_t = tower_t(u_t) after the last level
//! ```
//!
//! A task's gate sees only its own experts and the shared ones, so a task cannot be
//! swamped by another task's experts (the "seesaw" PLE was designed against); the shared
//! path carries what the tasks have in common to the next level.

use super::Head;
use crate::config::{ModelConfig, PleConfig};
use crate::error::ModelError;
use crate::graph::gate;
use crate::graph::{Graph, Node};
use crate::layers::{Builder, Linear, Mlp, Tower};

/// One extraction level.
#[derive(Debug, Clone)]
struct Level {
    /// Per task, its experts.
    task_experts: Vec<Vec<Mlp>>,
    shared_experts: Vec<Mlp>,
    task_gates: Vec<Linear>,
    /// The shared path's gate (every level but the last).
    shared_gate: Option<Linear>,
}

/// PLE's parameters.
#[derive(Debug, Clone)]
pub(crate) struct Ple {
    levels: Vec<Level>,
    towers: Vec<Tower>,
}

impl Ple {
    pub(crate) fn build(
        name: &str,
        c: &PleConfig,
        config: &ModelConfig,
        input: usize,
        b: &mut Builder<'_>,
    ) -> Result<Self, ModelError> {
        let tasks = config.tasks.len();
        let expert_width = *c.expert_hidden.last().expect("validated: not empty");
        let mut levels = Vec::new();
        let mut width = input;
        for j in 0..c.levels {
            let p = format!("{name}/level/{j}");
            let expert =
                |b: &mut Builder<'_>, n: String| b.mlp(&n, width, &c.expert_hidden).map(|(e, _)| e);
            let mut task_experts = Vec::with_capacity(tasks);
            for t in 0..tasks {
                task_experts.push(
                    (0..c.task_experts)
                        .map(|k| expert(b, format!("{p}/task/{t}/expert/{k}")))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            let shared_experts = (0..c.shared_experts)
                .map(|k| expert(b, format!("{p}/shared/expert/{k}")))
                .collect::<Result<Vec<_>, _>>()?;
            let task_gates = (0..tasks)
                .map(|t| {
                    b.gate(
                        &format!("{p}/task/{t}/gate"),
                        width,
                        c.task_experts + c.shared_experts,
                    )
                })
                .collect::<Result<_, _>>()?;
            let shared_gate = if j + 1 < c.levels {
                Some(b.gate(
                    &format!("{p}/shared/gate"),
                    width,
                    tasks * c.task_experts + c.shared_experts,
                )?)
            } else {
                None
            };
            levels.push(Level {
                task_experts,
                shared_experts,
                task_gates,
                shared_gate,
            });
            width = expert_width;
        }
        let towers = b.towers(name, tasks, width, &c.tower)?;
        Ok(Self { levels, towers })
    }
}

impl Head for Ple {
    fn forward(
        &self,
        g: &mut dyn Graph,
        x: Node,
        logits: &mut Vec<Node>,
    ) -> Result<(), ModelError> {
        let tasks = self.towers.len();
        let (mut inputs, mut all, mut next, mut chosen) = (g.list(), g.list(), g.list(), g.list());
        inputs.resize(tasks, x);
        let mut shared_in = x;
        for level in &self.levels {
            // Every expert's output: tasks' experts task by task, then the shared ones.
            all.clear();
            for (t, experts) in level.task_experts.iter().enumerate() {
                for e in experts {
                    all.push(e.forward(g, inputs[t])?);
                }
            }
            let shared_start = all.len();
            for e in &level.shared_experts {
                all.push(e.forward(g, shared_in)?);
            }
            let per_task = shared_start / tasks.max(1);
            next.clear();
            for (t, l) in level.task_gates.iter().enumerate() {
                chosen.clear();
                chosen.extend_from_slice(&all[t * per_task..(t + 1) * per_task]);
                chosen.extend_from_slice(&all[shared_start..]);
                let w = gate(g, inputs[t], l)?;
                next.push(g.mix(&chosen, w)?);
            }
            if let Some(l) = &level.shared_gate {
                let w = gate(g, shared_in, l)?;
                shared_in = g.mix(&all, w)?;
            }
            std::mem::swap(&mut inputs, &mut next);
        }
        for (tower, &u) in self.towers.iter().zip(&inputs) {
            logits.push(tower.forward(g, u)?);
        }
        for list in [inputs, all, next, chosen] {
            g.recycle(list);
        }
        Ok(())
    }
}
