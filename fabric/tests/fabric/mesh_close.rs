//! Meshes of different jobs on the same addresses: closing a mesh right after a send loses
//! nothing, and a mesh never talks to a mesh of another session. Closing: `Mesh::send` returns once QUIC holds the
//! bytes, so a rank that finishes its part of a collective and closes its mesh at once must
//! still let a slower peer receive the last transfer (seen in the soak: a job failed with
//! "receiving from rank 2 … failed" because rank 2 had finished and closed). Sessions: a
//! node's mesh of the previous job, still closing on its port, answered the next job's dials
//! and the next job ran against it. On tokio's paused clock, no sleeps.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use spacefabric_fabric::transport::{Mesh, TransportError};
use spacefabric_testkit::fabric::FabricCluster;
use spacefabric_testkit::profiles::{self, Rate};

/// Two meshes (ranks 0 and 1) on two sites 50 ms apart at 80 Mbit/s (a 4 MiB transfer is in
/// flight for ~0.45 s); `sessions[r]` is rank r's session.
async fn pair(sessions: [&str; 2]) -> Vec<Result<Mesh, TransportError>> {
    let profile = profiles::two_sites("test-close", "a", "b", 50.0, Some(Rate::Mbps(80.0)));
    FabricCluster::new(profile.profile(), &["a", "b"])
        .try_connect_with(|config| {
            config.session = sessions[config.rank].to_string();
            config.connect_timeout = Some(Duration::from_secs(20));
        })
        .await
}

#[tokio::test(start_paused = true)]
async fn a_mesh_closed_right_after_a_send_still_delivers_it() {
    let mut meshes: Vec<Mesh> = pair(["job-1/1", "job-1/1"])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let receiver = meshes.pop().unwrap();
    let sender = meshes.pop().unwrap();
    let payload = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    sender.send(1, 5, payload.clone()).await.unwrap();
    // The sender is done with its part: it closes while the bytes are still on the link.
    let closing = tokio::spawn(sender.close());
    let got = receiver.recv(0, 5).await.unwrap();
    assert!(got == payload, "the last transfer arrived intact");
    closing.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn meshes_of_different_sessions_never_connect() {
    let meshes = pair(["job-7/1", "job-8/1"]).await;
    for m in &meshes {
        assert!(m.is_err(), "a mesh connected to a peer of another session");
    }
}
