//! Recovery: when the controller restarts a job from committed step S (after a node died, or
//! to take in a replacement), every rank must start from the same state. Ranks that kept the
//! commit of step S on disk use it; the others — a replacement node, a node that joined late —
//! fetch it from a peer that has it.
//!
//! The protocol runs over the job's [`Exchange`] before training starts:
//! 1. every rank tells every other rank whether it holds step S (one byte);
//! 2. from the same table every rank computes the same donor for each rank that lacks it:
//!    the lowest-ranked holder in its own site (intra-site links are the fast ones), else the
//!    lowest-ranked holder anywhere ([`assign_donors`], pure);
//! 3. donors send the encoded [`Checkpoint`]; receivers decode and check its step.
//!
//! If no rank holds step S the job cannot resume without losing committed work, and every
//! rank fails with [`TrainError::Checkpoint`] naming the step.

use bytes::Bytes;

use super::checkpoint::{Checkpoint, CheckpointError};
use super::{ConfigError, TrainError};
use crate::collective::Exchange;

/// Tags of the recovery messages: group byte 0x09 (collectives and strategy sub-groups use
/// other top bytes), then the message kind.
const TAG_HAVE: u64 = 0x09 << 56 | 1;
const TAG_STATE: u64 = 0x09 << 56 | 2;

/// Where a rank's resumed state came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StateSource {
    /// The job starts from scratch (step 0).
    Fresh,
    /// This node's own commit on disk.
    OwnCommit,
    /// Fetched over the fabric from a peer.
    Peer {
        /// The donor's rank in the new plan.
        rank: usize,
        /// The donor's site.
        site: String,
        /// Bytes of the encoded checkpoint.
        bytes: u64,
    },
}

/// For every rank: `None` if it holds the state (or nobody does), else the rank that sends
/// it — the lowest-ranked holder on the same site, else the lowest-ranked holder anywhere.
pub fn assign_donors(have: &[bool], site_of_rank: &[String]) -> Vec<Option<usize>> {
    (0..have.len())
        .map(|r| {
            if have[r] {
                return None;
            }
            let same_site =
                (0..have.len()).find(|&d| have[d] && site_of_rank.get(d) == site_of_rank.get(r));
            same_site.or_else(|| (0..have.len()).find(|&d| have[d]))
        })
        .collect()
}

/// Agrees with every other rank of `ex` on the commit of `step` and returns it: `mine` (this
/// node's own commit of that step, if it has one) or the one a donor sent. `site_of_rank`
/// names every rank's site. Every rank of the job calls this with the same `step`.
pub async fn agree_on_commit<E: Exchange>(
    ex: &E,
    site_of_rank: &[String],
    step: u64,
    mine: Option<Checkpoint>,
) -> Result<(Checkpoint, StateSource), TrainError> {
    let (me, world) = (ex.rank(), ex.world_size());
    ConfigError::check_site_count("recovery", site_of_rank.len(), world)?;
    if let Some(ck) = &mine
        && ck.step != step
    {
        return Err(CheckpointError::LocalStep {
            found: ck.step,
            step,
        }
        .into());
    }
    let fail = |what: &str, e: crate::collective::ExchangeError| TrainError::Collective {
        op: "recovery",
        detail: format!("{what}: {e}"),
    };
    // 1. Who has it.
    let flag = Bytes::from(vec![u8::from(mine.is_some())]);
    let mut have = vec![false; world];
    have[me] = mine.is_some();
    let sends = (0..world)
        .filter(|&r| r != me)
        .map(|r| ex.send(r, TAG_HAVE, flag.clone()));
    let recvs = (0..world)
        .filter(|&r| r != me)
        .map(|r| async move { ex.recv(r, TAG_HAVE).await.map(|b| (r, b)) });
    let (sent, got) = futures::join!(
        futures::future::try_join_all(sends),
        futures::future::try_join_all(recvs)
    );
    sent.map_err(|e| fail("telling peers whether this rank holds the commit", e))?;
    for (r, b) in got.map_err(|e| fail("hearing which peers hold the commit", e))? {
        have[r] = b.first() == Some(&1);
    }
    if !have.iter().any(|&h| h) {
        return Err(CheckpointError::NobodyHolds { step }.into());
    }
    // 2. Donors.
    let donors = assign_donors(&have, site_of_rank);
    // 3. Transfer.
    if let Some(ck) = mine {
        let recipients: Vec<usize> = (0..world).filter(|&r| donors[r] == Some(me)).collect();
        if !recipients.is_empty() {
            let bytes = Bytes::from(ck.to_bytes());
            let sends = recipients
                .iter()
                .map(|&r| ex.send(r, TAG_STATE, bytes.clone()));
            futures::future::try_join_all(sends)
                .await
                .map_err(|e| fail("sending the commit to a peer without it", e))?;
            tracing::info!(
                step,
                ?recipients,
                bytes = bytes.len(),
                "recovery: sent the commit"
            );
        }
        return Ok((ck, StateSource::OwnCommit));
    }
    let Some(donor) = donors[me] else {
        return Err(CheckpointError::NoDonor { rank: me, step }.into());
    };
    let bytes = ex
        .recv(donor, TAG_STATE)
        .await
        .map_err(|e| fail(&format!("receiving the commit from rank {donor}"), e))?;
    let ck = Checkpoint::from_bytes(&bytes).map_err(|e| CheckpointError::FromDonor {
        donor,
        source: Box::new(e),
    })?;
    if ck.step != step {
        return Err(CheckpointError::DonorStep {
            donor,
            found: ck.step,
            step,
        }
        .into());
    }
    tracing::info!(
        step,
        donor,
        bytes = bytes.len(),
        "recovery: fetched the commit from a peer"
    );
    Ok((
        ck,
        StateSource::Peer {
            rank: donor,
            site: site_of_rank[donor].clone(),
            bytes: bytes.len() as u64,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::exchange::MemoryFabric;
    use crate::train::optim::OptimizerState;

    fn sites(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn donors_prefer_the_own_site_then_the_lowest_rank() {
        let site = sites(&["e", "e", "m", "m", "m"]);
        assert_eq!(
            assign_donors(&[false, true, false, false, true], &site),
            vec![Some(1), None, Some(4), Some(4), None]
        );
        // Nobody on the Moon has it: the lowest holder anywhere.
        assert_eq!(
            assign_donors(&[false, true, false, false, false], &site),
            vec![Some(1), None, Some(1), Some(1), Some(1)]
        );
        assert_eq!(
            assign_donors(&[false, false], &sites(&["e", "e"])),
            vec![None, None]
        );
    }

    fn ck(step: u64) -> Checkpoint {
        Checkpoint {
            step,
            params: vec![1.5, -2.0, step as f32],
            inner: OptimizerState {
                t: step,
                first: vec![0.5; 3],
                second: vec![0.25; 3],
            },
            outer: None,
        }
    }

    #[tokio::test]
    async fn a_replacement_fetches_the_commit_from_its_site() {
        let site = sites(&["e", "e", "m", "m"]);
        let eps = MemoryFabric::new(4).endpoints();
        let mut tasks = Vec::new();
        for ep in eps {
            let site = site.clone();
            // Rank 3 (a replacement on the Moon) has nothing; the others hold step 40.
            let mine = (ep.rank() != 3).then(|| ck(40));
            tasks.push(tokio::spawn(async move {
                agree_on_commit(&ep, &site, 40, mine).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        for (c, _) in &out {
            assert_eq!(c, &ck(40));
        }
        assert_eq!(out[0].1, StateSource::OwnCommit);
        match &out[3].1 {
            StateSource::Peer { rank, site, .. } => {
                assert_eq!((*rank, site.as_str()), (2, "m"));
            }
            other => panic!("rank 3 got its state from {other:?}"),
        }
    }

    #[tokio::test]
    async fn nobody_holding_the_step_is_an_error_on_every_rank() {
        let site = sites(&["e", "e"]);
        let eps = MemoryFabric::new(2).endpoints();
        let mut tasks = Vec::new();
        for ep in eps {
            let site = site.clone();
            tasks.push(tokio::spawn(async move {
                agree_on_commit(&ep, &site, 40, None).await
            }));
        }
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(err.to_string().contains("step 40"), "{err}");
        }
    }
}
