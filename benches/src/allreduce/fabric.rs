//! The local cluster the sweep runs on when no controller is given: N node endpoints in
//! this process.

use std::fmt;
use std::str::FromStr;

use netem_profiles::Profile;
use spacefabric_node::collective::{Corruption, MemoryExchange, MemoryFabric};

/// Which fabric the local endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FabricKind {
    /// Real QUIC (quinn) between the endpoints, over emulated links.
    Quic,
    /// In-process mailboxes: no QUIC, no links (tests the harness only).
    Memory,
}

impl FromStr for FabricKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "quic" => Ok(Self::Quic),
            "memory" => Ok(Self::Memory),
            other => Err(format!(
                "unknown fabric '{other}' (expected quic or memory)"
            )),
        }
    }
}

impl fmt::Display for FabricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Quic => "quic",
            Self::Memory => "memory",
        })
    }
}

/// The running endpoints.
#[derive(Debug)]
pub(crate) enum LocalFabric {
    /// In-process mailboxes.
    Memory(Vec<MemoryExchange>),
}

impl LocalFabric {
    /// Starts one endpoint per rank (`sites[r]` is rank r's site in `profile`).
    pub(crate) async fn start(
        kind: FabricKind,
        _profile: &Profile,
        sites: &[usize],
        _emulate: bool,
        corrupt: Option<Corruption>,
    ) -> anyhow::Result<Self> {
        if corrupt.is_some() && kind != FabricKind::Memory {
            anyhow::bail!("--corrupt works with --fabric memory only");
        }
        match kind {
            FabricKind::Memory => {
                let mut fabric = MemoryFabric::new(sites.len());
                if let Some(c) = corrupt {
                    fabric = fabric.corrupt(c);
                }
                Ok(Self::Memory(fabric.endpoints()))
            }
            FabricKind::Quic => anyhow::bail!(
                "--fabric quic: the QUIC mesh is not wired into this benchmark yet; use --fabric memory"
            ),
        }
    }

    /// One line for the report header saying what the endpoints are.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Memory(eps) => format!(
                "{} endpoints in this process over in-process mailboxes (no QUIC, no link emulation: harness test only)",
                eps.len()
            ),
        }
    }

    /// Transport settings for the JSON report.
    pub(crate) fn transport_settings(&self) -> serde_json::Value {
        match self {
            Self::Memory(_) => serde_json::json!({ "fabric": "memory" }),
        }
    }

    /// Whether links are emulated.
    pub(crate) fn emulated(&self) -> bool {
        match self {
            Self::Memory(_) => false,
        }
    }

    /// Closes every endpoint.
    pub(crate) async fn shutdown(self) {}
}
