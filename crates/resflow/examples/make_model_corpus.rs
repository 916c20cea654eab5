//! Writes the seed corpus of the `capi_model_bytes` fuzz target into
//! `fuzz/corpus/capi_model_bytes/`: one small model file of every model kind (ResFlow and
//! each baseline), plus a truncated copy and a copy with a flipped byte of one of them. Run
//! from the repository root: `cargo run -p resflow --example make_model_corpus`.

use resflow::config::ModelKind;
use resflow::{Field, InputLayout, Model, ModelConfig, Pooling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::Path::new("fuzz/corpus/capi_model_bytes");
    std::fs::create_dir_all(out)?;
    let layout = InputLayout {
        fields: vec![
            Field {
                name: "user".into(),
                vocab: 6,
                bag: None,
            },
            Field {
                name: "tags".into(),
                vocab: 5,
                bag: Some(Pooling::Sum),
            },
        ],
        dense: 1,
        tasks: vec!["click".into(), "conversion".into()],
    };
    for kind in ModelKind::NAMES {
        let mut config = ModelConfig::from_json(r#"{"embedding_dim": 2, "hidden": [3, 2]}"#)?
            .with_model(kind)?;
        // The smallest sizes each kind allows, so the fuzzer mutates structure, not floats.
        match &mut config.model {
            ModelKind::SharedBottom(c) => (c.bottom, c.tower) = (vec![2], vec![2]),
            ModelKind::Mmoe(c) => (c.experts, c.expert_hidden, c.tower) = (2, vec![2], vec![]),
            ModelKind::Ple(c) => (c.expert_hidden, c.tower) = (vec![2], vec![]),
            _ => {}
        }
        let bytes = Model::random(config, layout.clone(), 1)?.to_bytes()?;
        std::fs::write(out.join(format!("{kind}.safetensors")), &bytes)?;
        if kind == "mmoe" {
            std::fs::write(out.join("mmoe-truncated"), &bytes[..bytes.len() / 2])?;
            let mut flipped = bytes.clone();
            flipped[40] ^= 0x20;
            std::fs::write(out.join("mmoe-flipped-header"), &flipped)?;
        }
    }
    println!("wrote the seed corpus into {}", out.display());
    Ok(())
}
