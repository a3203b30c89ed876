//! A channel to the controller: the URL checked (http or https, a host), TLS trusting the
//! cluster CA for https, TCP_NODELAY, and either a lazy channel (the agent reconnects on its
//! own), one attempt (the CLI) or retries for a while (a bench started with its cluster).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The env variable every binary reads the CA certificate (PEM) of an https controller from.
pub const CA_CERT_ENV: &str = "SPACEFABRIC_CONTROLLER_CA";

/// The CA env variable the node and the forwarder used to read; refused with a message
/// naming [`CA_CERT_ENV`] so a stale deployment fails loudly instead of silently going
/// without its CA.
pub const RETIRED_CA_ENV: &str = "SPACEFABRIC_CA_CERT";

/// What went wrong talking to the controller; each names the flag or the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller URL is not `http://HOST:PORT` or `https://HOST:PORT`.
    #[error(
        "--controller '{url}': not a controller URL (use http://HOST:PORT or https://HOST:PORT)"
    )]
    Url {
        /// The URL given (at most 100 characters of it).
        url: String,
    },
    /// An https controller without a CA to trust.
    #[error("--controller {url} is https: give {flag} (the controller's ca.cert.pem)")]
    CaRequired {
        /// The URL.
        url: String,
        /// The CA flag of the binary (`--ca-cert`, `--controller-ca`).
        flag: String,
    },
    /// The CA file could not be read.
    #[error("{flag} {path}: {source}")]
    CaFile {
        /// The CA flag of the binary.
        flag: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The retired CA env variable is set.
    #[error("{RETIRED_CA_ENV} is set but no longer read: name the CA certificate in {CA_CERT_ENV}")]
    RetiredCaEnv,
    /// TLS could not be set up with the CA.
    #[error("{flag}: {message}")]
    Tls {
        /// The CA flag of the binary.
        flag: String,
        /// tonic's reason.
        message: String,
    },
    /// The controller could not be reached.
    #[error("--controller {url}: cannot connect: {message}")]
    Connect {
        /// The URL.
        url: String,
        /// The transport's reason, with its sources.
        message: String,
    },
    /// An RPC failed.
    #[error("{rpc}: {status}")]
    Rpc {
        /// The RPC and its subject (`SubmitJob`, `WatchJob job-3`).
        rpc: String,
        /// The status the controller (or the transport) gave.
        status: tonic::Status,
    },
    /// The controller stayed away longer than the re-attach patience.
    #[error("job {job_id}: lost the controller ({status}) and could not re-attach for {secs} s")]
    Reattach {
        /// The job followed.
        job_id: String,
        /// The last error.
        status: tonic::Status,
        /// The patience, seconds.
        secs: u64,
    },
}

/// How to reach the controller.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The controller URL.
    pub url: String,
    /// The CA certificate (PEM) to trust for https.
    pub ca_pem: Option<String>,
    /// The binary's flag for the CA, named in errors (`--ca-cert`, `--controller-ca`).
    pub ca_flag: String,
    /// TCP connect timeout. Default: 5 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive pings (for long-lived sessions such as the agent's). Default: none.
    pub keep_alive: Option<Duration>,
}

impl ConnectOptions {
    /// `url` over plain http or, with `ca_pem`, https; errors name `--ca-cert`.
    pub fn new(url: &str, ca_pem: Option<String>) -> Self {
        Self {
            url: url.to_string(),
            ca_pem,
            ca_flag: "--ca-cert".into(),
            connect_timeout: Duration::from_secs(5),
            keep_alive: None,
        }
    }

    /// The CA flag named in errors.
    pub fn ca_flag(mut self, flag: &str) -> Self {
        self.ca_flag = flag.to_string();
        self
    }

    /// With HTTP/2 keep-alive pings every `interval`, also while idle.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }
}

/// Fails when the retired CA env variable is set (see [`RETIRED_CA_ENV`]).
pub fn refuse_retired_ca_env() -> Result<(), ClientError> {
    match std::env::var_os(RETIRED_CA_ENV) {
        Some(_) => Err(ClientError::RetiredCaEnv),
        None => Ok(()),
    }
}

/// Reads the CA certificate file given with `flag`.
pub fn read_ca(flag: &str, path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|source| ClientError::CaFile {
        flag: flag.to_string(),
        path: path.display().to_string(),
        source,
    })
}

/// The endpoint for `options`: the URL checked, TLS for https, TCP_NODELAY.
pub fn endpoint(options: &ConnectOptions) -> Result<Endpoint, ClientError> {
    let url = &options.url;
    let bad_url = || ClientError::Url {
        url: url.chars().take(100).collect(),
    };
    let endpoint = Endpoint::from_shared(url.clone()).map_err(|_| bad_url())?;
    let uri = endpoint.uri();
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(bad_url());
    }
    let https = uri.scheme_str() == Some("https");
    let mut endpoint = endpoint
        .connect_timeout(options.connect_timeout)
        // No Nagle delay on the control plane (tonic's default too; set so it stays).
        .tcp_nodelay(true);
    if let Some(interval) = options.keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(interval)
            .keep_alive_while_idle(true);
    }
    if https {
        let ca = options
            .ca_pem
            .as_ref()
            .ok_or_else(|| ClientError::CaRequired {
                url: url.clone(),
                flag: options.ca_flag.clone(),
            })?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .map_err(|e| ClientError::Tls {
                flag: options.ca_flag.clone(),
                message: e.to_string(),
            })?;
    }
    Ok(endpoint)
}

/// One attempt to connect.
pub async fn connect(options: &ConnectOptions) -> Result<Channel, ClientError> {
    endpoint(options)?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            url: options.url.clone(),
            message: with_sources(&e),
        })
}

/// Connects, retrying with backoff (100 ms doubling to 2 s) for `patience`: for a client
/// started together with its cluster.
pub async fn connect_patiently(
    options: &ConnectOptions,
    patience: Duration,
) -> Result<Channel, ClientError> {
    let endpoint = endpoint(options)?;
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) if started.elapsed() < patience => {
                tracing::debug!(url = %options.url, error = %e, "controller not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                return Err(ClientError::Connect {
                    url: options.url.clone(),
                    message: format!("{} (tried for {} s)", with_sources(&e), patience.as_secs()),
                });
            }
        }
    }
}

/// An error and its chain of sources, `: `-separated.
fn with_sources(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_scheme_or_host_is_refused_naming_it() {
        for url in ["garbage", "ftp://host:1", "http://"] {
            let err = endpoint(&ConnectOptions::new(url, None)).unwrap_err();
            assert!(matches!(err, ClientError::Url { .. }), "{url}: {err}");
            assert!(err.to_string().contains("not a controller URL"), "{err}");
        }
    }

    #[test]
    fn https_without_a_ca_names_the_binary_s_flag() {
        let options = ConnectOptions::new("https://ctl:7400", None).ca_flag("--controller-ca");
        let err = endpoint(&options).unwrap_err().to_string();
        assert!(err.contains("--controller-ca"), "{err}");
        assert!(endpoint(&ConnectOptions::new("http://ctl:7400", None)).is_ok());
    }

    #[test]
    fn an_unreadable_ca_file_names_the_flag_and_the_path() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("missing.pem");
        let err = read_ca("--ca-cert", &path).unwrap_err().to_string();
        assert!(
            err.starts_with("--ca-cert ") && err.contains("missing.pem"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn connect_patiently_gives_up_after_its_patience_naming_the_url() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let options = ConnectOptions::new("http://127.0.0.1:1", None);
        let err = connect_patiently(&options, Duration::from_secs(3))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--controller http://127.0.0.1:1") && err.contains("tried for 3 s"),
            "{err}"
        );
    }
}
