//! Finding the MPI launcher, and telling whether this process was started by one.
//!
//! A process started by `mpirun` (MPICH's Hydra, Open MPI, Slurm's `srun` with PMI) finds
//! its rank in its environment. Started alone, MPI would run it as a single rank, which is
//! never what `--distributed` means: it is refused with the command to use.

use std::path::PathBuf;

/// Environment variables an MPI launcher sets in every process it starts (MPICH's Hydra and
/// PMI-1/2 launchers, PMIx, Open MPI).
pub const LAUNCHED_VARS: &[&str] = &["PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"];

/// Whether this process was started by an MPI launcher: an error saying how to launch it if
/// not.
pub fn launched_by_mpirun() -> Result<(), crate::Error> {
    if LAUNCHED_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
        Ok(())
    } else {
        Err(crate::Error::NotLaunched {
            vars: LAUNCHED_VARS.join(", "),
        })
    }
}

/// `mpirun` on the `PATH` (or `mpiexec`), for tests and benchmarks that launch ranks.
pub fn find_mpirun() -> Result<PathBuf, crate::Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["mpirun", "mpiexec"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(crate::Error::NoMpirun)
}
