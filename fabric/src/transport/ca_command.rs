//! `spacefabric-node ca ...`: create a dev cluster CA and node identities on disk, until the
//! controller (the cluster CA of a running cluster) signs node certificates itself.

use std::path::PathBuf;

use crate::transport::tls::{DevCa, TlsError};

/// The `ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a new cluster CA: writes ca.pem and ca.key (mode 0600) into --out.
    Init {
        /// Directory to write the CA into (created if missing).
        #[arg(long, env = "SPACEFABRIC_OUT")]
        out: PathBuf,
        /// Overwrite an existing CA in --out.
        #[arg(long, env = "SPACEFABRIC_FORCE", default_value_t = false)]
        force: bool,
    },
    /// Issue a node identity signed by the CA: writes ca.pem, node.pem and node.key into --out.
    Issue {
        /// Directory of the CA made by `ca init`.
        #[arg(long, env = "SPACEFABRIC_CA")]
        ca: PathBuf,
        /// Node name (the certificate's DNS name; a-z, 0-9, '-', '.'); `--name` is accepted too.
        #[arg(long = "node-name", alias = "name", env = "SPACEFABRIC_NODE_NAME")]
        name: String,
        /// Directory to write the identity into (created if missing).
        #[arg(long, env = "SPACEFABRIC_OUT")]
        out: PathBuf,
    },
}

/// Why a `ca` subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CaCommandError {
    /// The CA or identity operation failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `ca init` would overwrite an existing CA.
    #[error("{0} already holds a CA (ca.key); pass --force to replace it")]
    Exists(PathBuf),
}

/// Runs a `ca` subcommand; returns what to tell the user.
pub fn run(command: &CaCommand) -> Result<String, CaCommandError> {
    match command {
        CaCommand::Init { out, force } => {
            if out.join("ca.key").exists() && !force {
                return Err(CaCommandError::Exists(out.clone()));
            }
            DevCa::generate()?.save(out)?;
            Ok(format!(
                "cluster CA written to {} (ca.pem, ca.key)",
                out.display()
            ))
        }
        CaCommand::Issue { ca, name, out } => {
            let ca = DevCa::load(ca)?;
            ca.issue(name)?.save(out)?;
            Ok(format!(
                "identity for {name} written to {} (ca.pem, node.pem, node.key)",
                out.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::NodeIdentity;

    #[test]
    fn init_then_issue_writes_a_loadable_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let init = CaCommand::Init {
            out: ca.clone(),
            force: false,
        };
        run(&init).unwrap();
        // A second init would destroy the CA every node trusts: refused without --force.
        assert!(matches!(run(&init), Err(CaCommandError::Exists(_))));
        let node = dir.path().join("moon-4");
        let msg = run(&CaCommand::Issue {
            ca: ca.clone(),
            name: "moon-4".to_string(),
            out: node.clone(),
        })
        .unwrap();
        assert!(msg.contains("moon-4"), "{msg}");
        assert_eq!(NodeIdentity::load(&node).unwrap().name(), "moon-4");
        let err = run(&CaCommand::Issue {
            ca: dir.path().join("missing"),
            name: "x".to_string(),
            out: node,
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
