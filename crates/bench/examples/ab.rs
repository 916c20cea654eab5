//! A/B of serving-plan variants, interleaved in one process: each argument `KC:MERGE_BYTES:FUSED` sets the knobs of this experimental build before a pair of scorers (with and without the request-level split) is compiled.
use bench::Clock;
use bench::score::{ALICCP_REQUEST_FIELDS, aliccp_layout, latencies_on, percentile};
use resflow::config::TaskConfig;
use resflow::{Model, ModelConfig, Scorer};

fn scorer(split: bool) -> Scorer {
    let config = ModelConfig {
        tasks: ["click", "conversion"]
            .iter()
            .map(|n| TaskConfig::unweighted(*n))
            .collect(),
        request_fields: if split {
            ALICCP_REQUEST_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            vec![]
        },
        ..ModelConfig::default()
    };
    Scorer::new(Model::random(config, aliccp_layout(100_000), 1).unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args[0].parse().unwrap();
    let mut cfgs = Vec::new();
    for a in &args[1..] {
        let v: Vec<&str> = a.split(':').collect();
        let (kc, merge) = (v[0], v[1]);
        unsafe {
            std::env::set_var("RESFLOW_FUSED", v.get(2).copied().unwrap_or("0"));
            std::env::set_var("RESFLOW_SERVING_KC", kc);
            std::env::set_var("RESFLOW_MERGE_BYTES", merge);
        }
        cfgs.push((a.clone(), scorer(true), scorer(false)));
    }
    let mut res: Vec<[Vec<f64>; 4]> = vec![Default::default(); cfgs.len()];
    for round in 0..rounds {
        for (i, (_, s, w)) in cfgs.iter().enumerate() {
            let a = latencies_on(s, 500, 200, round as u64, Clock::Thread).unwrap();
            let b = latencies_on(w, 500, 100, round as u64, Clock::Thread).unwrap();
            res[i][0].push(percentile(&a, 0.5) * 1e3);
            res[i][1].push(percentile(&a, 0.99) * 1e3);
            res[i][2].push(percentile(&b, 0.5) * 1e3);
            res[i][3].push(percentile(&b, 0.99) * 1e3);
        }
    }
    for (i, (name, ..)) in cfgs.iter().enumerate() {
        let f = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[0], v[v.len() / 2])
        };
        let r = &mut res[i];
        let (a, b, c, d) = (f(&mut r[0]), f(&mut r[1]), f(&mut r[2]), f(&mut r[3]));
        println!(
            "{name:>14}: split p50 best {:.3} med {:.3} p99 med {:.3} | nosplit p50 best {:.3} med {:.3} p99 med {:.3}",
            a.0, a.1, b.1, c.0, c.1, d.1
        );
    }
}
