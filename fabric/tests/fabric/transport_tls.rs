//! Cluster CA and mutual TLS: identities issue, save and load; the CSR path works; a QUIC
//! handshake succeeds between members and fails when either side's certificate comes from
//! another CA.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use spacefabric_fabric::transport::tls::{DevCa, NodeIdentity, TlsError};

fn endpoint(id: &NodeIdentity) -> quinn::Endpoint {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut ep = quinn::Endpoint::server(id.quic_server_config().unwrap(), addr).unwrap();
    ep.set_default_client_config(id.quic_client_config().unwrap());
    ep
}

/// Dials `server` from `client` (expecting the server to be `server_name`); returns whether
/// both sides completed the handshake.
async fn handshake(client: &NodeIdentity, server: &NodeIdentity, server_name: &str) -> bool {
    let s = endpoint(server);
    let c = endpoint(client);
    let addr = s.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let incoming = s.accept().await.unwrap();
        match incoming.await {
            Ok(conn) => {
                // With TLS 1.3 the server learns about a bad client certificate after the
                // client thinks it is done: wait for the connection to be really usable.
                let ok = conn.accept_uni().await.is_ok();
                conn.close(0u32.into(), b"done");
                ok
            }
            Err(_) => false,
        }
    });
    let client_ok = match c.connect(addr, server_name).unwrap().await {
        Ok(conn) => {
            let opened = async {
                let mut s = conn.open_uni().await?;
                s.write_all(b"hi").await?;
                s.finish()?;
                anyhow::Ok(())
            }
            .await;
            opened.is_ok() && conn.closed().await.to_string().contains("done")
        }
        Err(_) => false,
    };
    let server_ok = accept.await.unwrap();
    client_ok && server_ok
}

#[tokio::test]
async fn members_of_one_ca_connect() {
    let ca = DevCa::generate().unwrap();
    let a = ca.issue("node-0").unwrap();
    let b = ca.issue("node-1").unwrap();
    assert_eq!(a.name(), "node-0");
    assert!(handshake(&a, &b, "node-1").await);
}

#[tokio::test]
async fn stranger_client_is_refused() {
    let ca = DevCa::generate().unwrap();
    let other = DevCa::generate().unwrap();
    let server = ca.issue("node-1").unwrap();
    let stranger = other.issue("node-0").unwrap();
    assert!(!handshake(&stranger, &server, "node-1").await);
}

#[tokio::test]
async fn stranger_server_is_refused() {
    let ca = DevCa::generate().unwrap();
    let other = DevCa::generate().unwrap();
    let client = ca.issue("node-0").unwrap();
    let stranger = other.issue("node-1").unwrap();
    assert!(!handshake(&client, &stranger, "node-1").await);
}

#[tokio::test]
async fn server_with_the_wrong_name_is_refused() {
    let ca = DevCa::generate().unwrap();
    let a = ca.issue("node-0").unwrap();
    let b = ca.issue("node-1").unwrap();
    assert!(!handshake(&a, &b, "node-7").await);
}

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate().unwrap();
    ca.save(&dir.path().join("ca")).unwrap();
    let reloaded = DevCa::load(&dir.path().join("ca")).unwrap();
    assert_eq!(reloaded.cert_pem(), ca.cert_pem());
    // A node issued by the reloaded CA verifies against the original CA certificate.
    let id = reloaded.issue("moon-3").unwrap();
    id.save(&dir.path().join("moon-3")).unwrap();
    let loaded = NodeIdentity::load(&dir.path().join("moon-3")).unwrap();
    assert_eq!(loaded.name(), "moon-3");
    assert_eq!(loaded.ca_pem(), ca.cert_pem());
    NodeIdentity::from_pem(
        ca.cert_pem(),
        loaded.cert_pem(),
        &std::fs::read_to_string(dir.path().join("moon-3/node.key")).unwrap(),
    )
    .unwrap();
}

#[test]
fn csr_path_signs_the_requested_name_only() {
    let ca = DevCa::generate().unwrap();
    let req = NodeIdentity::csr("earth-2").unwrap();
    let signed = ca.sign_csr(req.csr_pem()).unwrap();
    assert_eq!(signed.node_name, "earth-2");
    let id = req.into_identity(&signed.cert_pem, ca.cert_pem()).unwrap();
    assert_eq!(id.name(), "earth-2");
}

#[test]
fn certificate_from_another_ca_or_key_is_rejected_at_load() {
    let ca = DevCa::generate().unwrap();
    let other = DevCa::generate().unwrap();
    let req = NodeIdentity::csr("earth-2").unwrap();
    let signed = other.sign_csr(req.csr_pem()).unwrap();
    let err = req
        .into_identity(&signed.cert_pem, ca.cert_pem())
        .unwrap_err();
    assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");

    let a = ca.issue("a").unwrap();
    let b_req = NodeIdentity::csr("a").unwrap();
    let err = b_req
        .into_identity(a.cert_pem(), ca.cert_pem())
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match the node key"),
        "{err}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let ca = DevCa::generate().unwrap();
    assert!(matches!(
        ca.issue("Bad_Name"),
        Err(TlsError::InvalidName { .. })
    ));
    assert!(matches!(ca.issue(""), Err(TlsError::InvalidName { .. })));
    assert!(matches!(
        ca.issue("1.2.3.4"),
        Err(TlsError::InvalidName { .. })
    ));
    assert!(matches!(ca.sign_csr("garbage"), Err(TlsError::Pem { .. })));
    let err = NodeIdentity::from_pem("nope", "nope", "nope").unwrap_err();
    assert!(err.to_string().contains("CA certificate"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = DevCa::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("ca.pem"), "{err}");
    let _ = Arc::new(());
}
