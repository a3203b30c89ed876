//! The cluster's certificate authority and node identities, and the mutual-TLS configs the
//! QUIC fabric runs on.
//!
//! Every node holds a [`NodeIdentity`]: a private key, a certificate signed by the cluster CA
//! (whose only DNS name is the node's name) and the CA certificate itself. Both ends of a
//! fabric connection present their certificate and check the other's against the CA, so a
//! process whose certificate the CA did not sign is refused during the handshake.
//!
//! The controller is the cluster CA in a running cluster: a node makes a key and a
//! certificate signing request ([`NodeIdentity::csr`]), the controller signs it
//! ([`DevCa::sign_csr`]) and the node completes its identity ([`CertRequest::into_identity`]).
//! Until then `spacefabric-node ca init` / `ca issue` create a dev CA and node identities on
//! disk ([`DevCa::save`], [`NodeIdentity::save`]).
//!
//! Crypto is rustls 0.23 with the ring provider, TLS 1.3 only (QUIC requires it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

/// ALPN protocol of the spacefabric fabric; both ends must speak it.
pub const FABRIC_ALPN: &[u8] = b"spacefabric-fabric/1";

/// File names inside a CA or identity directory.
const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const NODE_CERT_FILE: &str = "node.pem";
const NODE_KEY_FILE: &str = "node.key";

/// Longest node name accepted (a DNS label is at most 63 bytes; names may have several).
const MAX_NAME_LEN: usize = 253;

/// Why a CA or identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A node name that cannot be a certificate DNS name.
    #[error(
        "invalid node name {name:?}: use 1-253 characters of a-z, 0-9, '-' and '.', not starting or ending with '-' or '.'"
    )]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// Key or certificate generation or signing failed.
    #[error("certificate {what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// A PEM input could not be read.
    #[error("{what}: not valid PEM ({detail})")]
    Pem {
        /// Which input (file path or field).
        what: String,
        /// The parser's complaint.
        detail: String,
    },
    /// A certificate signing request did not name exactly one node.
    #[error("certificate signing request: expected exactly one DNS name, found {found}")]
    CsrDnsNames {
        /// DNS names the request holds.
        found: usize,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM text held no certificate.
    #[error("empty {what}: no certificate in the PEM")]
    EmptyPem {
        /// Which certificate (`CA certificate`, `node certificate`).
        what: &'static str,
    },
    /// A certificate is not for the private key loaded with it.
    #[error("{cert} does not match the {key}")]
    KeyMismatch {
        /// The certificate (`CA certificate`, `node certificate for earth-0`).
        cert: String,
        /// The key (`CA key`, `node key`).
        key: &'static str,
    },
    /// The CA certificate cannot be a trust anchor.
    #[error("CA certificate as trust anchor: {0}")]
    TrustAnchor(#[source] rustls::Error),
    /// The certificate verifier could not be built from the CA.
    #[error("certificate verifier over the CA: {0}")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// The node certificate does not verify under the CA it was loaded with.
    #[error("node certificate for {name} is not valid under this CA: {source}")]
    NotSignedByCa {
        /// The node name the certificate is for.
        name: String,
        /// The verifier's complaint.
        source: rustls::Error,
    },
    /// rustls refused the configuration (protocol versions, certificate chain and key).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration has no cipher suite QUIC can use.
    #[error("TLS configuration for QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// A node certificate must name exactly one node (one DNS subject alternative name).
    #[error("certificate must name exactly one node, found {found} DNS names")]
    DnsNames {
        /// DNS names found.
        found: usize,
    },
    /// An identity or CA directory held files that do not go together.
    #[error("{}: {source}", dir.display())]
    InDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with its files.
        source: Box<Self>,
    },
}

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Rcgen { what, source }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `name` can be a DNS name in a certificate and a TLS server name.
pub fn validate_node_name(name: &str) -> Result<(), TlsError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ok_edges = !name.starts_with(['-', '.']) && !name.ends_with(['-', '.']);
    let ok_labels = name.split('.').all(|l| !l.is_empty() && l.len() <= 63);
    // A name made only of digits and dots would parse as an IP address, not a DNS name.
    let not_ip = name.parse::<std::net::IpAddr>().is_err();
    if !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && ok_chars
        && ok_edges
        && ok_labels
        && not_ip
        && ServerName::try_from(name.to_string()).is_ok()
    {
        Ok(())
    } else {
        Err(TlsError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Sets the validity window of a certificate we issue: from a year ago (clock skew between
/// nodes) to ten years ahead.
fn set_validity(params: &mut CertificateParams) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
}

/// Parameters of a node certificate: the node name as its only DNS name and common name,
/// usable as both TLS client and server (every node dials and accepts).
fn node_params(name: &str) -> Result<CertificateParams, TlsError> {
    validate_node_name(name)?;
    let mut params =
        CertificateParams::new(vec![name.to_string()]).map_err(rcgen_err("node parameters"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "spacefabric cluster");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    Ok(params)
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

fn write_text(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(io_err(path))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

fn parse_key(pem: &str, what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::from_pem(pem).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            detail: "no CERTIFICATE section".to_string(),
        });
    }
    Ok(certs)
}

/// The cluster certificate authority: a self-signed CA certificate and its key.
pub struct DevCa {
    /// The issuer rcgen signs with (same subject and key as `cert_pem`).
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as saved and distributed: the trust anchor.
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A fresh CA with a new ECDSA P-256 key.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_err("CA key generation"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "spacefabric cluster CA");
        dn.push(DnType::OrganizationName, "spacefabric cluster");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params);
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("CA self-signing"))?;
        let cert_pem = cert.pem();
        Ok(Self {
            cert,
            key,
            cert_pem,
        })
    }

    /// Loads a CA from its certificate and key PEM texts.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = parse_key(key_pem, "CA key")?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem).map_err(|e| TlsError::Pem {
            what: "CA certificate".to_string(),
            detail: e.to_string(),
        })?;
        // rcgen needs a Certificate value as issuer: re-sign the same subject with the same
        // key. Certificates it then signs verify against the original CA certificate (same
        // subject name and key), which stays the trust anchor on disk.
        let cert = params.self_signed(&key).map_err(rcgen_err("CA reload"))?;
        // Fails here if the key is not the certificate's.
        let anchor = parse_certs(cert_pem, "CA certificate")?;
        if !anchor
            .first()
            .is_some_and(|c| leaf_public_key_matches(c, &key))
        {
            return Err(TlsError::KeyMismatch {
                cert: "CA certificate".to_string(),
                key: "CA key",
            });
        }
        Ok(Self {
            cert,
            key,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// Loads a CA saved by [`DevCa::save`] from `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert = read_text(&cert_path)?;
        let key = read_text(&key_path)?;
        Self::from_pem(&cert, &key).map_err(|e| match e {
            TlsError::Pem { what, detail } => TlsError::Pem {
                what: format!("{} ({what})", dir.display()),
                detail,
            },
            other => other,
        })
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_text(&dir.join(CA_CERT_FILE), &self.cert_pem, false)?;
        write_text(&dir.join(CA_KEY_FILE), &self.key.serialize_pem(), true)
    }

    /// The CA certificate, PEM: the trust anchor every node holds.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a node identity (new key + certificate for `node_name`) directly.
    pub fn issue(&self, node_name: &str) -> Result<NodeIdentity, TlsError> {
        let key = KeyPair::generate().map_err(rcgen_err("node key generation"))?;
        let cert = node_params(node_name)?
            .signed_by(&key, &self.cert, &self.key)
            .map_err(rcgen_err("node signing"))?;
        NodeIdentity::from_pem(&self.cert_pem, &cert.pem(), &key.serialize_pem())
    }

    /// Signs a node's certificate signing request (PEM). The CA, not the request, decides
    /// what the certificate says: the request must name exactly one valid node name (its
    /// DNS subject alternative name); the certificate carries that name, the node usages and
    /// the CA's validity window, whatever else the request asked for. Returns the signed
    /// certificate (PEM) and the node name it certifies.
    pub fn sign_csr(&self, csr_pem: &str) -> Result<SignedCert, TlsError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| TlsError::Pem {
                what: "certificate signing request".to_string(),
                detail: e.to_string(),
            })?;
        let names: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter_map(|san| match san {
                SanType::DnsName(n) => Some(n.as_str().to_string()),
                _ => None,
            })
            .collect();
        let [name] = names.as_slice() else {
            return Err(TlsError::CsrDnsNames { found: names.len() });
        };
        let signed = CertificateSigningRequestParams {
            params: node_params(name)?,
            public_key: csr.public_key,
        }
        .signed_by(&self.cert, &self.key)
        .map_err(rcgen_err("CSR signing"))?;
        Ok(SignedCert {
            node_name: name.clone(),
            cert_pem: signed.pem(),
        })
    }
}

/// A certificate the CA signed from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCert {
    /// The node name the certificate is valid for.
    pub node_name: String,
    /// The certificate, PEM.
    pub cert_pem: String,
}

/// A node's key and certificate signing request, waiting for the CA's signature.
pub struct CertRequest {
    name: String,
    key: KeyPair,
    csr_pem: String,
}

impl std::fmt::Debug for CertRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertRequest")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CertRequest {
    /// The node name requested.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certificate signing request, PEM (send this to the CA).
    pub fn csr_pem(&self) -> &str {
        &self.csr_pem
    }

    /// Completes the identity with the certificate the CA returned and the CA certificate.
    /// Fails if the certificate is not for this request's key.
    pub fn into_identity(
        self,
        cert_pem: &str,
        ca_cert_pem: &str,
    ) -> Result<NodeIdentity, TlsError> {
        NodeIdentity::from_pem(ca_cert_pem, cert_pem, &self.key.serialize_pem())
    }
}

/// A node's credentials for the fabric: key, certificate chain and the CA to trust.
#[derive(Clone)]
pub struct NodeIdentity {
    name: String,
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key_pem: String,
    ca: CertificateDer<'static>,
    ca_pem: String,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Makes a new key and a certificate signing request for `node_name`.
    pub fn csr(node_name: &str) -> Result<CertRequest, TlsError> {
        validate_node_name(node_name)?;
        // Only the name: the CA decides usages and validity when it signs.
        let mut params = CertificateParams::new(vec![node_name.to_string()])
            .map_err(rcgen_err("CSR parameters"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        params.distinguished_name = dn;
        let key = KeyPair::generate().map_err(rcgen_err("node key generation"))?;
        let csr = params
            .serialize_request(&key)
            .map_err(rcgen_err("CSR serialisation"))?;
        let csr_pem = csr.pem().map_err(rcgen_err("CSR PEM encoding"))?;
        Ok(CertRequest {
            name: node_name.to_string(),
            key,
            csr_pem,
        })
    }

    /// Builds an identity from PEM texts: the CA certificate, the node's certificate (chain)
    /// and its private key. Checks that the certificate is signed by the CA, names a valid
    /// node and matches the key.
    pub fn from_pem(ca_cert_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let ca = parse_certs(ca_cert_pem, "CA certificate")?
            .into_iter()
            .next()
            .ok_or(TlsError::EmptyPem {
                what: "CA certificate",
            })?;
        let chain = parse_certs(cert_pem, "node certificate")?;
        let key = parse_key(key_pem, "node key")?;
        let leaf = chain.first().ok_or(TlsError::EmptyPem {
            what: "node certificate",
        })?;
        let name = cert_dns_name(leaf)?;
        // The key must be the certificate's.
        if !leaf_public_key_matches(leaf, &key) {
            return Err(TlsError::KeyMismatch {
                cert: format!("node certificate for {name}"),
                key: "node key",
            });
        }
        let identity = Self {
            name,
            chain,
            chain_pem: cert_pem.to_string(),
            key_pem: key.serialize_pem(),
            ca,
            ca_pem: ca_cert_pem.to_string(),
        };
        // Fails here, not at the first handshake, if the CA did not sign the certificate.
        identity.verify_own_chain()?;
        Ok(identity)
    }

    /// Loads an identity saved by [`NodeIdentity::save`] from `dir`
    /// (`ca.pem`, `node.pem`, `node.key`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let ca = read_text(&dir.join(CA_CERT_FILE))?;
        let cert = read_text(&dir.join(NODE_CERT_FILE))?;
        let key = read_text(&dir.join(NODE_KEY_FILE))?;
        Self::from_pem(&ca, &cert, &key).map_err(|e| match e {
            TlsError::Pem { what, detail } => TlsError::Pem {
                what: format!("{} ({what})", dir.display()),
                detail,
            },
            e @ (TlsError::EmptyPem { .. }
            | TlsError::KeyMismatch { .. }
            | TlsError::NotSignedByCa { .. }
            | TlsError::DnsNames { .. }
            | TlsError::InvalidName { .. }) => TlsError::InDir {
                dir: dir.to_path_buf(),
                source: Box::new(e),
            },
            other => other,
        })
    }

    /// Writes `ca.pem`, `node.pem` and `node.key` (mode 0600) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_text(&dir.join(CA_CERT_FILE), &self.ca_pem, false)?;
        write_text(&dir.join(NODE_CERT_FILE), &self.chain_pem, false)?;
        write_text(&dir.join(NODE_KEY_FILE), &self.key_pem, true)
    }

    /// The node name the certificate is valid for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node certificate chain, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Pem {
            what: "node key".to_string(),
            detail: e.to_string(),
        })
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(TlsError::TrustAnchor)?;
        Ok(Arc::new(roots))
    }

    fn verify_own_chain(&self) -> Result<(), TlsError> {
        // Ask the same verifier peers will use.
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots()?, provider())
                .build()
                .map_err(TlsError::Verifier)?;
        let server_name =
            ServerName::try_from(self.name.clone()).map_err(|_| TlsError::InvalidName {
                name: self.name.clone(),
            })?;
        let (leaf, rest) = self.chain.split_first().ok_or(TlsError::EmptyPem {
            what: "node certificate",
        })?;
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            leaf,
            rest,
            &server_name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|source| TlsError::NotSignedByCa {
            name: self.name.clone(),
            source,
        })?;
        Ok(())
    }

    /// rustls server config: presents our certificate and requires a client certificate
    /// signed by the cluster CA.
    pub fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(TlsError::Verifier)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.private_key()?)?;
        config.alpn_protocols = vec![FABRIC_ALPN.to_vec()];
        Ok(config)
    }

    /// rustls client config: presents our certificate and accepts only servers whose
    /// certificate the cluster CA signed (the name is checked per connection).
    pub fn client_crypto(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.private_key()?)?;
        config.alpn_protocols = vec![FABRIC_ALPN.to_vec()];
        Ok(config)
    }

    /// quinn server config (crypto only; the transport config is set per connection).
    pub fn quic_server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(self.server_crypto()?)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// quinn client config (crypto only; the transport config is set per connection).
    pub fn quic_client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(self.client_crypto()?)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

/// The ring crypto provider, shared by every config we build.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node name a certificate is for: its (single) DNS subject alternative name.
pub fn cert_dns_name(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let params = CertificateParams::from_ca_cert_der(cert).map_err(|e| TlsError::Pem {
        what: "certificate".to_string(),
        detail: e.to_string(),
    })?;
    let names: Vec<String> = params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::DnsName(n) => Some(n.as_str().to_string()),
            _ => None,
        })
        .collect();
    match names.as_slice() {
        [name] => {
            validate_node_name(name)?;
            Ok(name.clone())
        }
        _ => Err(TlsError::DnsNames { found: names.len() }),
    }
}

/// Does `key`'s public key equal the certificate's?
fn leaf_public_key_matches(cert: &CertificateDer<'_>, key: &KeyPair) -> bool {
    // The SubjectPublicKeyInfo DER of the key appears verbatim in the certificate.
    let spki = key.public_key_der();
    cert.as_ref()
        .windows(spki.len())
        .any(|w| w == spki.as_slice())
}

/// Checks that a connected peer's certificate is for `expected_name` (the handshake has
/// already checked that the CA signed it).
pub fn peer_is(conn: &quinn::Connection, expected_name: &str) -> Result<(), PeerCertError> {
    let identity = conn.peer_identity().ok_or(PeerCertError::NoCertificate)?;
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| PeerCertError::NotAChain)?;
    let leaf = certs.first().ok_or(PeerCertError::EmptyChain)?;
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(PeerCertError::Unreadable)?;
    let name = ServerName::try_from(expected_name.to_string()).map_err(|_| {
        PeerCertError::BadExpectedName {
            name: expected_name.to_string(),
        }
    })?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| PeerCertError::NotFor {
            name: expected_name.to_string(),
        })
}

/// Why a connected peer's certificate is not the expected node's ([`peer_is`]).
#[derive(Debug, thiserror::Error)]
pub enum PeerCertError {
    /// The TLS session has no peer certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The peer identity is of another kind than a certificate chain.
    #[error("peer identity is not a certificate chain")]
    NotAChain,
    /// The chain has no leaf.
    #[error("peer presented an empty certificate chain")]
    EmptyChain,
    /// The leaf does not parse.
    #[error("peer certificate unreadable: {0:?}")]
    Unreadable(webpki::Error),
    /// The name we expect is not a valid server name.
    #[error("invalid expected peer name {name:?}")]
    BadExpectedName {
        /// The roster's name of the peer.
        name: String,
    },
    /// The certificate is valid but for another name.
    #[error("peer certificate is not for {name}")]
    NotFor {
        /// The roster's name of the peer.
        name: String,
    },
}
