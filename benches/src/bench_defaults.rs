//! The defaults every benchmark subcommand shares (the scenario it runs on and its seed),
//! written once; the defaults of a job's own fields come from the proto crate
//! (`spacefabric_proto::all_reduce_job::defaults`, `spacefabric_proto::train_job::defaults`),
//! which the controller and the nodes read too.

/// Profile of `--profile`: the two-site scenario the project is about.
pub(crate) const PROFILE: &str = "earth-moon";
/// Ranks of `--nodes`: 4 on each site of the default profile.
pub(crate) const NODES: usize = 8;
/// Seed of `--seed` (data, initial model, checked inputs).
pub(crate) const SEED: u64 = 1;
