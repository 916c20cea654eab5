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
/// not (and how to install one, if there is no `mpirun` on the `PATH`).
pub fn launched_by_mpirun() -> Result<(), crate::Error> {
    if LAUNCHED_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
        return Ok(());
    }
    find_mpirun()?;
    Err(crate::Error::NotLaunched {
        vars: LAUNCHED_VARS.join(", "),
    })
}

/// Worker threads for each rank by default: the machine's `cores` shared by the ranks the
/// launcher placed on this machine (`MPI_LOCALNRANKS`, set by MPICH's Hydra;
/// `OMPI_COMM_WORLD_LOCAL_SIZE` by Open MPI), at least one.
pub fn threads_per_rank(cores: usize) -> usize {
    let local = ["MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    (cores / local).max(1)
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
