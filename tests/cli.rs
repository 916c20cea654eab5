//! The command line as a user runs it: kernel tier selection and the GEMM benchmark's JSON.

use std::process::Command;

fn resflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_resflow"))
}

#[test]
fn resflow_kernel_forces_a_tier_and_rejects_unknown_ones() {
    let out = resflow()
        .arg("info")
        .env("RESFLOW_KERNEL", "portable")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kernel tier in use: portable"), "{text}");

    let out = resflow()
        .arg("info")
        .env("RESFLOW_KERNEL", "sse9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown kernel tier") && err.contains("sse9"),
        "{err}"
    );

    // A tier the CPU lacks is an error naming what it has; every supported one is accepted.
    for tier in tensor::Tier::ALL {
        let out = resflow()
            .arg("info")
            .env("RESFLOW_KERNEL", tier.name())
            .output()
            .unwrap();
        assert_eq!(out.status.success(), tier.is_supported(), "{tier}");
    }
}

#[test]
fn bench_gemm_json_is_one_object_with_every_field() {
    let out = resflow()
        .args([
            "bench",
            "gemm",
            "--json",
            "--rounds",
            "1",
            "--round-ms",
            "1",
        ])
        .args([
            "--shape",
            "40,33,17",
            "--shape",
            "20,1,9,TN",
            "--kernel",
            "portable",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON value");
    assert_eq!(v["kernel"], "portable");
    assert!(v["peak_gflops"].as_f64().unwrap() > 0.0);
    let shapes = v["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 2);
    assert_eq!(
        (shapes[1]["m"].as_u64(), shapes[1]["trans_a"].as_bool()),
        (Some(20), Some(true))
    );
    for s in shapes {
        for key in ["ours_gflops", "reference_gflops", "ratio"] {
            assert!(s[key].as_f64().unwrap() > 0.0, "{key} in {s}");
        }
    }
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    let out = resflow()
        .args(["bench", "gemm", "--shape", "4,4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected M,N,K"));
    let out = resflow()
        .args(["bench", "gemm", "--kernel", "mmx"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kernel tier"));
}
