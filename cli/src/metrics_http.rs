//! The HTTP endpoint every spacefabric process serves beside its work (`--metrics-listen`):
//!
//! - `GET /metrics`: Prometheus text, the process's own families (the `metrics` facade's
//!   recorder) followed by the process metrics read from /proc at this scrape;
//! - `GET /readyz`: 200 once the process says it is ready (a node: registered with the
//!   controller), else 503 — what a Kubernetes readiness probe asks;
//! - `GET /livez`: 200 while the process serves HTTP — the liveness probe;
//! - anything else: 404.
//!
//! One implementation for the controller, the nodes and the forwarder, so probes and scrapers
//! see the same thing everywhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::process_metrics;

/// Histogram buckets (seconds) of every `*_seconds` histogram: from LAN round trips to
/// Earth-Moon ones (2.56 s) and minute-long jobs.
pub const SECONDS_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 2.56, 5.0, 10.0, 60.0];

/// Whether the process is ready for work; shared between the process and its endpoint.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet (a node before its registration).
    pub fn not_ready() -> Self {
        Self::default()
    }

    /// Ready from the start (the forwarder, the controller: ready once they serve).
    pub fn ready() -> Self {
        let r = Self::default();
        r.set(true);
        r
    }

    /// Marks the process ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The global metrics recorder could not be installed (one is installed already).
    #[error("metrics recorder: {0}")]
    Recorder(String),
    /// The listen address could not be bound.
    #[error("--metrics-listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs the global Prometheus recorder (`*_seconds` histograms get [`SECONDS_BUCKETS`])
/// and sets the `spacefabric_build_info` gauge with this build's version and git commit.
pub fn install_recorder() -> Result<PrometheusHandle, EndpointError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|e| EndpointError::Recorder(e.to_string()))?;
    spacefabric_proto::metrics_catalog::register_build_info(crate::version::GIT_COMMIT);
    Ok(handle)
}

/// The endpoint's body for `/metrics`: the recorder's families, then the process metrics.
pub fn render_metrics(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    let mut text = handle.render();
    match process_metrics::sample() {
        Ok(sample) => process_metrics::render(&sample, &mut text),
        Err(e) => tracing::debug!("process metrics left out: {e}"),
    }
    text
}

/// Binds `listen` and serves the endpoint on a background task until the runtime ends.
/// Returns the bound address (port 0 picks a free one).
pub async fn serve(
    listen: SocketAddr,
    handle: PrometheusHandle,
    readiness: Readiness,
) -> Result<SocketAddr, EndpointError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| EndpointError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| EndpointError::Bind {
            addr: listen,
            source,
        })?;
    let state = Arc::new((handle, readiness));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    tracing::warn!(%local, "metrics endpoint: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(respond(&state.0, &state.1, &req)) }
                    });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("metrics endpoint connection: {e}");
                }
            });
        }
    });
    Ok(local)
}

fn respond<B>(
    handle: &PrometheusHandle,
    readiness: &Readiness,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        resp
    };
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(handle),
        ),
        "/readyz" if readiness.is_ready() => text(StatusCode::OK, PLAIN, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, "not ready\n".into()),
        "/livez" => text(StatusCode::OK, PLAIN, "alive\n".into()),
        path => text(
            StatusCode::NOT_FOUND,
            PLAIN,
            format!("{path}: not found (try /metrics, /readyz, /livez)\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.expect("read");
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_carry_process_families() {
        // A recorder not installed globally: this test must not fight others for the global one.
        let handle = PrometheusBuilder::new().build_recorder().handle();
        let ready = Readiness::not_ready();
        let addr = serve("127.0.0.1:0".parse().expect("addr"), handle, ready.clone())
            .await
            .expect("serve");
        assert_eq!(get(addr, "/readyz").await.0, 503);
        assert_eq!(get(addr, "/livez").await.0, 200);
        ready.set(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        assert_eq!(get(addr, "/nope").await.0, 404);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        if cfg!(target_os = "linux") {
            for spec in spacefabric_proto::metrics_catalog::PROCESS_METRICS {
                assert!(body.contains(&format!("# TYPE {} ", spec.name)), "{body}");
            }
        }
        assert!(
            spacefabric_proto::metrics_catalog::families_without_help_or_type(&body).is_empty(),
            "{body}"
        );
    }
}
