//! What the workspace's tests share, in one place instead of a copy per test file (issue 16,
//! step 5): profile fixtures built in code ([`profiles`]), the in-process fabric harness of
//! N meshes on pre-bound sockets ([`fabric`]), an in-process controller on a lan topology
//! ([`controller`]), the workspace's binaries located once ([`bins`]), the local process
//! cluster the controller's process tests run ([`procs`]) and job results of a realistic
//! size ([`results`]).
//!
//! A dev-dependency only (`publish = false`): it panics with a message naming what failed
//! instead of returning errors, as a test wants.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod bins;
pub mod controller;
pub mod fabric;
pub mod procs;
pub mod profiles;
pub mod results;
