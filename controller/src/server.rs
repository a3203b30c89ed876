//! Wiring of the controller process: loads the state dir and the CA, builds the core, serves
//! `spacefabric.v1.Controller` with gRPC health and reflection (optionally over TLS), runs the
//! failure detector, and shuts everything down on request (ending every server stream so the
//! graceful shutdown completes).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spacefabric_proto::v1::controller_server::ControllerServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::ca::ClusterCa;
use crate::core::{Core, CoreConfig};
use crate::error::ControllerError;
use crate::light_delay::LightDelay;
use crate::service::{ControllerService, Shared};
use crate::state_log::StateLog;
use crate::store::StateDir;
use crate::topology::Topology;

/// Largest request the controller decodes (default 1 MiB); anything larger is refused with
/// `OUT_OF_RANGE`/`RESOURCE_EXHAUSTED` before it reaches a handler.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Sites and delays of the profile.
    pub topology: Topology,
    /// Core settings (controller site, heartbeat interval and misses).
    pub core: CoreConfig,
    /// The cluster's join token (must not be empty).
    pub join_token: String,
    /// Where members, plan, jobs and the CA persist; `None` keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// Delay controller↔node messages by the light delay between their sites.
    pub light_delay: bool,
    /// Serve TLS with a certificate from the cluster CA for these names (DNS names or IPs).
    pub tls_names: Option<Vec<String>>,
    /// Largest decoded request, bytes.
    pub max_message_bytes: usize,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Setup failed (state dir, CA, token).
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running controller.
#[derive(Debug)]
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The cluster CA certificate (PEM): clients of a TLS controller trust it.
    pub ca_cert_pem: String,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl ServerHandle {
    /// The shared state (tests inspect the core through it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Ends every stream, stops accepting, waits for in-flight calls, returns.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops (after [`ServerHandle::shutdown`] or a transport error).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(r) => r.map_err(ServeError::from),
            Err(e) => Err(ServeError::Task(e)),
        }
    }

    /// A sender that triggers shutdown (for signal handlers).
    pub fn shutdown_trigger(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Loads state, builds the service and serves on `listener` until shutdown.
pub async fn spawn_server(
    config: ServerConfig,
    listener: TcpListener,
) -> Result<ServerHandle, ServeError> {
    if config.join_token.is_empty() {
        return Err(ControllerError::invalid("--join-token", "must not be empty").into());
    }
    let addr = listener.local_addr().map_err(|e| ControllerError::State {
        path: "listener".into(),
        message: e.to_string(),
    })?;
    let started = tokio::time::Instant::now();
    let (store, persisted, ca) = match &config.state_dir {
        Some(dir) => {
            let dir = StateDir::open(dir)?;
            let ca = ClusterCa::load_or_create(&dir)?;
            let (store, persisted) = StateLog::open(dir)?;
            (Some(store), persisted, ca)
        }
        None => (None, None, ClusterCa::generate()?),
    };
    if let Some(state) = &persisted
        && state.profile_name != config.topology.profile_name
    {
        tracing::warn!(
            state = %state.profile_name, profile = %config.topology.profile_name,
            "the state dir was made with another profile; members on unknown sites are kept"
        );
    }
    let resumed = persisted.is_some();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tmp_shared = Shared::new(
        Core::new(
            config.core.clone(),
            config.topology.clone(),
            persisted,
            crate::core::Now {
                mono: Duration::ZERO,
                unix_ms: unix_ms(),
            },
        ),
        store,
        ca,
        config.join_token.clone(),
        LightDelay::new(config.light_delay).dilated(config.core.time_dilation),
        started,
        shutdown_rx.clone(),
    );
    let shared = Arc::new(tmp_shared);
    // Write the first state (or confirm the loaded one is writable) right away.
    shared.with_core(|_, _| ());
    let ca_cert_pem = shared.ca().cert_pem().to_string();

    let mut builder = Server::builder().layer(tower::util::MapResponseLayer::new(
        undecodable_is_invalid_argument,
    ));
    if let Some(names) = &config.tls_names {
        let (cert, key) = shared.ca().server_identity(names)?;
        builder =
            builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ControllerServer<ControllerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(spacefabric_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(ServeError::Reflection)?;
    let service = ControllerServer::new(ControllerService::new(shared.clone()))
        .max_decoding_message_size(config.max_message_bytes);

    // Failure detector: a few checks per heartbeat interval (emulated: K times longer on the
    // wall clock).
    let detector_shared = shared.clone();
    let mut detector_stop = shutdown_rx.clone();
    let tick = config
        .core
        .time_dilation
        .wall(config.core.heartbeat_interval / 4)
        .max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => { detector_shared.expire(); }
                _ = detector_stop.wait_for(|s| *s) => break,
            }
        }
    });

    let mut stop = shutdown_rx;
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service);
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(nodelay_incoming(listener), async move {
                let _ = stop.wait_for(|s| *s).await;
                let _ = health_reporter;
            })
            .await
    });
    tracing::info!(
        %addr, profile = %config.topology.profile_name, controller_site = %config.core.controller_site,
        resumed, tls = config.tls_names.is_some(), light_delay = config.light_delay,
        time_dilation = config.core.time_dilation.get(),
        "controller serving"
    );
    Ok(ServerHandle {
        addr,
        ca_cert_pem,
        shared,
        shutdown: shutdown_tx,
        task,
    })
}

/// tonic answers a request whose bytes are not the method's protobuf message with `INTERNAL`
/// ("failed to decode Protobuf message"); the fault is the client's, so the status becomes
/// `INVALID_ARGUMENT` (the message is kept).
fn undecodable_is_invalid_argument(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let undecodable = headers.get("grpc-message").is_some_and(|m| {
        m.as_bytes().starts_with(b"failed%20to%20decode")
            || m.as_bytes().starts_with(b"failed to decode")
    });
    if internal && undecodable {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    response
}

/// The accepted connections of `listener`, each with `TCP_NODELAY` set. tonic's
/// `Server::tcp_nodelay` applies only when tonic binds the listener itself; without it a reply
/// written in two segments waits for the client's delayed ACK (Nagle): 40–44 ms per RPC on
/// loopback, more than the light delay of a LAN profile.
pub fn nodelay_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::StreamExt::map(TcpListenerStream::new(listener), |accepted| {
        let stream = accepted?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
        }
        Ok(stream)
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
