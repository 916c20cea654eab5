//! `resflow export --onnx`: from a model file and from a checkpoint, the bytes the library
//! writes, and the outputs it refuses before any work.

use std::path::Path;
use std::process::{Command, Output};

fn resflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resflow"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = resflow(args);
    assert!(
        out.status.success(),
        "resflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = resflow(args);
    assert!(!out.status.success(), "resflow {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn export_onnx_from_a_model_file_and_a_checkpoint() {
    let dir = std::env::temp_dir().join(format!("resflow-export-onnx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    ok(&[
        "gen",
        "--rows",
        "2000",
        "--max-vocab",
        "50",
        "--out",
        &p("data"),
    ]);
    ok(&[
        "train",
        "--train",
        &p("data"),
        "--threads",
        "1",
        "--checkpoint-dir",
        &p("ckpt"),
        "--out",
        &p("model.safetensors"),
    ]);
    let text = ok(&[
        "export",
        "--model",
        &p("model.safetensors"),
        "--onnx",
        &p("model.onnx"),
    ]);
    assert!(text.contains("ONNX graph written to"), "{text}");
    // The file holds what the library writes for the model (ir_version 8 comes first).
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let model = resflow::Model::load(Path::new(&p("model.safetensors"))).unwrap();
    assert_eq!(bytes, onnx::to_bytes(&model).unwrap());
    assert_eq!(&bytes[..2], &[0x08, 0x08]);

    // From the checkpoint, both files at once; the graph is the same model's.
    ok(&[
        "export",
        "--checkpoint",
        &p("ckpt"),
        "--out",
        &p("again.safetensors"),
        "--onnx",
        &p("again.onnx"),
    ]);
    assert_eq!(std::fs::read(dir.join("again.onnx")).unwrap(), bytes);

    // Refused before any work, each naming its option.
    let err = fails(&[
        "export",
        "--model",
        &p("model.safetensors"),
        "--onnx",
        &p("model.safetensors"),
    ]);
    assert!(err.contains("--onnx"), "{err}");
    let err = fails(&[
        "export",
        "--model",
        &p("model.safetensors"),
        "--onnx",
        &p("missing/model.onnx"),
    ]);
    assert!(err.contains("--onnx"), "{err}");
    let err = fails(&["export", "--model", &p("model.safetensors")]);
    assert!(err.contains("--onnx") || err.contains("--out"), "{err}");
    let err = fails(&[
        "export",
        "--checkpoint",
        &p("ckpt"),
        "--model",
        &p("model.safetensors"),
        "--onnx",
        &p("x.onnx"),
    ]);
    assert!(
        err.contains("--model") && err.contains("--checkpoint"),
        "{err}"
    );
    assert!(!dir.join("x.onnx").exists());
    // The model file is untouched by the refused export.
    assert_eq!(
        resflow::Model::load(Path::new(&p("model.safetensors"))).unwrap(),
        model
    );
    let _ = std::fs::remove_dir_all(&dir);
}
