//! The committed C header `include/resflow.h` must be what cbindgen generates from this
//! crate today; `RESFLOW_BLESS=1 cargo test -p capi --test header` rewrites it.

use std::path::PathBuf;

#[test]
fn committed_header_is_current() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("crates/capi/cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen parses crates/capi");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = crate_dir.join("../../include/resflow.h");
    if std::env::var_os("RESFLOW_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("include/resflow.h is writable");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/resflow.h differs from the header cbindgen generates from crates/capi; \
         regenerate it with `RESFLOW_BLESS=1 cargo test -p capi --test header` and commit it"
    );
}
