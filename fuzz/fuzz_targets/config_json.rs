//! Fuzz target: `ModelConfig::from_json` on arbitrary text returns a configuration or a
//! typed error, never panics; a configuration it accepts serialises and parses back to
//! itself, and checking it against a small input layout (request fields, memory estimate)
//! is an answer, not a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resflow::{Field, InputLayout, ModelConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = ModelConfig::from_json(text) else {
        return;
    };
    let again = serde_json::to_string(&config).expect("a valid configuration serialises");
    assert_eq!(ModelConfig::from_json(&again).expect("and parses back"), config);
    let layout = InputLayout {
        fields: ["user", "item"]
            .iter()
            .map(|n| Field {
                name: n.to_string(),
                vocab: 1000,
                bag: None,
            })
            .collect(),
        dense: 2,
        tasks: config.tasks.iter().map(|t| t.name.clone()).collect(),
    };
    let _ = resflow::checks::check_config_for_layout(&config, &layout);
    let _ = resflow::checks::training_bytes_estimate(&config, &layout);
});
