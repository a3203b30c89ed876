//! The cluster CA: the controller signs every node's certificate signing request (the node's
//! QUIC identity) and issues its own gRPC TLS certificate. Generated on the first start and
//! kept in the state dir (`ca.cert.pem`, `ca.key.pem` readable by the owner only); without a
//! state dir it lives in memory for the life of the process.
//!
//! Node certificates carry the node's name (DNS SAN) and its advertise IP, whatever the CSR
//! asked for: the controller decides what a node may claim.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

use crate::error::ControllerError;
use crate::store::StateDir;

/// CA certificate file in the state dir.
pub const CA_CERT_FILE: &str = "ca.cert.pem";
/// CA private key file in the state dir.
pub const CA_KEY_FILE: &str = "ca.key.pem";

/// The cluster's certificate authority.
pub struct ClusterCa {
    cert_pem: String,
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

fn cert_err(what: &str, source: rcgen::Error) -> ControllerError {
    ControllerError::Certificate {
        what: what.to_string(),
        source,
    }
}

fn san(name: &str) -> Result<SanType, ControllerError> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => name
            .try_into()
            .map(SanType::DnsName)
            .map_err(|e| cert_err(&format!("name '{name}'"), e)),
    }
}

impl ClusterCa {
    /// A new CA (self-signed, `spacefabric cluster CA`).
    pub fn generate() -> Result<Self, ControllerError> {
        let key = KeyPair::generate().map_err(|e| cert_err("CA key", e))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "spacefabric cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = params
            .self_signed(&key)
            .map_err(|e| cert_err("CA certificate", e))?;
        Ok(Self {
            cert_pem: issuer.pem(),
            issuer,
            key,
        })
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, ControllerError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| cert_err(CA_KEY_FILE, e))?;
        let params =
            CertificateParams::from_ca_cert_pem(cert_pem).map_err(|e| cert_err(CA_CERT_FILE, e))?;
        // Re-signing the parsed parameters gives an issuer with the same name and key: what
        // signing needs. The original PEM stays the one handed out.
        let issuer = params
            .self_signed(&key)
            .map_err(|e| cert_err(CA_CERT_FILE, e))?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            issuer,
            key,
        })
    }

    /// The CA of the state dir, created there on the first start.
    pub fn load_or_create(store: &StateDir) -> Result<Self, ControllerError> {
        match (store.read(CA_CERT_FILE)?, store.read(CA_KEY_FILE)?) {
            (Some(cert), Some(key)) => Self::from_pem(&cert, &key),
            (None, None) => {
                let ca = Self::generate()?;
                store.write_atomic(CA_KEY_FILE, ca.key.serialize_pem().as_bytes(), true)?;
                store.write_atomic(CA_CERT_FILE, ca.cert_pem.as_bytes(), false)?;
                Ok(ca)
            }
            _ => Err(ControllerError::State {
                path: store.path().display().to_string(),
                message: format!("has only one of {CA_CERT_FILE} and {CA_KEY_FILE}"),
            }),
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The public key of a PEM CSR (SubjectPublicKeyInfo DER, hex): what a node name is bound to.
    pub fn csr_public_key(csr_pem: &str) -> Result<String, ControllerError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            ControllerError::invalid("csr_pem", format!("not a valid PEM CSR: {e}"))
        })?;
        Ok(csr
            .public_key
            .der_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Signs a node's CSR: the certificate names `node_name` and `ip`, for client and server
    /// authentication (mutual TLS between peers).
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        node_name: &str,
        ip: IpAddr,
    ) -> Result<String, ControllerError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            ControllerError::invalid("csr_pem", format!("not a valid PEM CSR: {e}"))
        })?;
        csr.params.subject_alt_names = vec![san(node_name)?, SanType::IpAddress(ip)];
        csr.params.distinguished_name = rcgen::DistinguishedName::new();
        csr.params
            .distinguished_name
            .push(DnType::CommonName, node_name);
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        csr.params.use_authority_key_identifier_extension = true;
        let cert = csr
            .signed_by(&self.issuer, &self.key)
            .map_err(|e| cert_err("signing the node certificate", e))?;
        Ok(cert.pem())
    }

    /// A fresh key and a server certificate for `names` (DNS names or IPs): the controller's
    /// gRPC TLS identity. Returns (certificate PEM, key PEM).
    pub fn server_identity(&self, names: &[String]) -> Result<(String, String), ControllerError> {
        let key = KeyPair::generate().map_err(|e| cert_err("server key", e))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "spacefabric controller");
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| cert_err("server certificate", e))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// A node-side key and CSR for `node_name` (what an agent sends at registration).
/// Returns (CSR PEM, private key PEM).
pub fn node_csr(node_name: &str) -> Result<(String, String), ControllerError> {
    let key = KeyPair::generate().map_err(|e| cert_err("node key", e))?;
    let params = CertificateParams::new(vec![node_name.to_string()])
        .map_err(|e| cert_err(&format!("name '{node_name}'"), e))?;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| cert_err("CSR", e))?;
    Ok((csr, key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_survives_a_restart_and_signs_csrs() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::open(dir.path()).unwrap();
        let ca = ClusterCa::load_or_create(&store).unwrap();
        let again = ClusterCa::load_or_create(&store).unwrap();
        assert_eq!(ca.cert_pem(), again.cert_pem());
        let (csr, _key) = node_csr("node-0").unwrap();
        let cert = again
            .sign_node_csr(&csr, "node-0", "127.0.0.1".parse().unwrap())
            .unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let garbage = again.sign_node_csr("garbage", "node-0", "127.0.0.1".parse().unwrap());
        assert!(
            matches!(garbage, Err(ControllerError::InvalidArgument { field, .. }) if field == "csr_pem")
        );
    }
}
