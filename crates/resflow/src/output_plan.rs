//! Checking every output path of a command before any work starts.
//!
//! A command lists its inputs (datasets, model files, checkpoint directories) and its
//! outputs (files and directories) in an [`OutputPlan`], each under the name of its
//! command-line option, and calls [`OutputPlan::check`] before reading any data. The check
//! refuses, naming the option:
//!
//! - an output that is one of the inputs, or lies inside an input directory (a scores file
//!   written over a shard, a model written over the model being scored);
//! - two outputs that are the same file (`--out X --report X`), or an output file that is a
//!   file a directory output will write (`--out ckpt/checkpoint.safetensors`);
//! - an output file that is an existing directory, an output directory that is an existing
//!   file;
//! - an output whose directory does not exist or cannot be written (probed by creating and
//!   removing a temporary file there, which is the only reliable test).
//!
//! Paths are compared after resolving `.`, `..` and symbolic links of their existing part,
//! so two spellings of one file are one file.

use std::path::{Component, Path, PathBuf};

use model::ModelError;

/// What a command reads and writes, by option name.
#[derive(Debug, Default, Clone)]
pub struct OutputPlan {
    inputs: Vec<(String, PathBuf)>,
    files: Vec<(String, PathBuf)>,
    dirs: Vec<(String, PathBuf, Vec<String>)>,
}

fn err(detail: String) -> ModelError {
    ModelError::Output(detail)
}

/// `path` made absolute with its existing part resolved (symbolic links, `..`).
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    // Canonicalise the longest existing prefix, then append the rest lexically.
    let mut rest = Vec::new();
    let mut head = absolute.as_path();
    loop {
        if let Ok(c) = head.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        match (head.parent(), head.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                head = parent;
            }
            _ => return absolute,
        }
    }
}

/// Whether a file can be created in directory `dir` (which exists).
fn writable_dir(dir: &Path) -> Result<(), std::io::Error> {
    let probe = dir.join(format!(".resflow-write-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

impl OutputPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// An input (file or directory) read by the command, named by its option.
    pub fn input(mut self, option: &str, path: &Path) -> Self {
        self.inputs.push((option.into(), path.to_path_buf()));
        self
    }

    /// An output file, if given.
    pub fn file(mut self, option: &str, path: Option<&Path>) -> Self {
        if let Some(p) = path {
            self.files.push((option.into(), p.to_path_buf()));
        }
        self
    }

    /// An output directory, if given, and the file names the command writes inside it.
    pub fn dir(mut self, option: &str, path: Option<&Path>, writes: &[&str]) -> Self {
        if let Some(p) = path {
            self.dirs.push((
                option.into(),
                p.to_path_buf(),
                writes.iter().map(|s| s.to_string()).collect(),
            ));
        }
        self
    }

    /// Checks every output; the first problem is an error naming the option and the path.
    pub fn check(&self) -> Result<(), ModelError> {
        let inputs: Vec<(&str, PathBuf, &Path)> = self
            .inputs
            .iter()
            .map(|(o, p)| (o.as_str(), resolve(p), p.as_path()))
            .collect();
        let clash_with_inputs = |option: &str, given: &Path, resolved: &Path| {
            for (input, r, p) in &inputs {
                if resolved == r {
                    return Err(err(format!(
                        "{option} {} is the same path as {input} {}: it would be overwritten",
                        given.display(),
                        p.display()
                    )));
                }
                if r.is_dir() && resolved.starts_with(r) {
                    return Err(err(format!(
                        "{option} {} lies inside {input} {}: writing there would damage it",
                        given.display(),
                        p.display()
                    )));
                }
            }
            Ok(())
        };
        let mut written: Vec<(&str, PathBuf, &Path)> = Vec::new();
        for (option, path, writes) in &self.dirs {
            let r = resolve(path);
            clash_with_inputs(option, path, &r)?;
            if r.exists() && !r.is_dir() {
                return Err(err(format!(
                    "{option} {} is an existing file, not a directory",
                    path.display()
                )));
            }
            let base = existing_ancestor(&r);
            writable_dir(&base).map_err(|e| {
                err(format!(
                    "{option} {}: cannot write in {}: {e}",
                    path.display(),
                    base.display()
                ))
            })?;
            for w in writes {
                written.push((option, r.join(w), path));
            }
        }
        for (option, path) in &self.files {
            let r = resolve(path);
            clash_with_inputs(option, path, &r)?;
            if let Some((other, _, p)) = written.iter().find(|(_, w, _)| *w == r) {
                return Err(err(format!(
                    "{option} {} is a file that {other} {} also writes",
                    path.display(),
                    p.display()
                )));
            }
            if r.is_dir() {
                return Err(err(format!(
                    "{option} {} is a directory; give a file name",
                    path.display()
                )));
            }
            let parent = r.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(err(format!(
                    "{option} {}: directory {} does not exist",
                    path.display(),
                    parent.display()
                )));
            }
            writable_dir(parent).map_err(|e| {
                err(format!(
                    "{option} {}: cannot write in {}: {e}",
                    path.display(),
                    parent.display()
                ))
            })?;
            written.push((option, r, path));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("plan-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn msg(plan: OutputPlan) -> String {
        plan.check().unwrap_err().to_string()
    }

    #[test]
    fn outputs_onto_inputs_are_refused() {
        let d = temp("inputs");
        let data = d.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("shard-00000.rfs"), b"x").unwrap();
        let model = d.join("m.safetensors");
        std::fs::write(&model, b"m").unwrap();
        let base = || {
            OutputPlan::new()
                .input("--model", &model)
                .input("--data", &data)
        };
        let e = msg(base().file("--out", Some(&data.join("shard-00000.rfs"))));
        assert!(e.contains("--out") && e.contains("inside --data"), "{e}");
        let e = msg(base().file("--out", Some(&d.join("./sub/../m.safetensors"))));
        assert!(e.contains("same path as --model"), "{e}");
        let e = msg(base().dir("--checkpoint-dir", Some(&data), &[]));
        assert!(e.contains("--checkpoint-dir"), "{e}");
        assert!(
            base()
                .file("--out", Some(&d.join("scores.csv")))
                .check()
                .is_ok()
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn outputs_that_collide_or_cannot_be_written_are_refused() {
        let d = temp("collide");
        let out = d.join("m.safetensors");
        let e = msg(OutputPlan::new()
            .file("--out", Some(&out))
            .file("--report", Some(&out)));
        assert!(e.contains("--report") && e.contains("--out"), "{e}");
        let ckpt = d.join("ckpt");
        let e = msg(OutputPlan::new()
            .dir("--checkpoint-dir", Some(&ckpt), &["checkpoint.safetensors"])
            .file("--out", Some(&ckpt.join("checkpoint.safetensors"))));
        assert!(e.contains("also writes"), "{e}");
        let e = msg(OutputPlan::new().file("--out", Some(&d)));
        assert!(e.contains("is a directory"), "{e}");
        // A new checkpoint directory in an existing one is fine.
        assert!(
            OutputPlan::new()
                .dir("--checkpoint-dir", Some(&d.join("new/deeper")), &[])
                .check()
                .is_ok()
        );
        std::fs::write(d.join("afile"), b"").unwrap();
        let e = msg(OutputPlan::new().dir("--checkpoint-dir", Some(&d.join("afile")), &[]));
        assert!(e.contains("existing file"), "{e}");
        let e = msg(OutputPlan::new().file("--out", Some(&d.join("no/such/dir/m"))));
        assert!(e.contains("does not exist"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }
}
