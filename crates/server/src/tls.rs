//! HTTPS material: the local CA and the server certificate (rcgen), or the user's own files.
//!
//! First start creates `DIR/tls/ca.pem` + `ca.key`; every start issues a fresh server certificate
//! from that CA for localhost, 127.0.0.1, ::1 and every `--hostname`, so a changed hostname list
//! never needs manual steps. Private keys are written with mode 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::files::write_private_file;

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The CA a client must trust; `None` when the user brought their own certificate.
    pub ca_cert_path: Option<PathBuf>,
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "openmi local CA");
    name.push(DnType::OrganizationName, "openmi");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

/// Creates the CA on first use and issues the server certificate for `names`.
pub fn ensure_local_ca(data_dir: &Path, names: &[String]) -> anyhow::Result<TlsFiles> {
    let tls_dir = data_dir.join("tls");
    std::fs::create_dir_all(&tls_dir)
        .with_context(|| format!("cannot create {}", tls_dir.display()))?;
    let ca_cert_path = tls_dir.join("ca.pem");
    let ca_key_path = tls_dir.join("ca.key");
    let ca_params = ca_params();
    let ca_key = if ca_key_path.exists() && ca_cert_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("cannot read {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem)
            .map_err(|error| anyhow!("{} is not a usable key: {error}", ca_key_path.display()))?
    } else {
        let key =
            KeyPair::generate().map_err(|error| anyhow!("CA key generation failed: {error}"))?;
        let cert = ca_params
            .self_signed(&key)
            .map_err(|error| anyhow!("CA certificate generation failed: {error}"))?;
        write_private_file(&ca_key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&ca_cert_path, cert.pem())
            .with_context(|| format!("cannot write {}", ca_cert_path.display()))?;
        key
    };
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let mut server_params = CertificateParams::new(names.to_vec())
        .map_err(|error| anyhow!("invalid hostname: {error}"))?;
    server_params.distinguished_name.push(
        DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".to_string()),
    );
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let now = time::OffsetDateTime::now_utc();
    server_params.not_before = now - time::Duration::days(1);
    server_params.not_after = now + time::Duration::days(397);
    let server_key =
        KeyPair::generate().map_err(|error| anyhow!("server key generation failed: {error}"))?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|error| anyhow!("server certificate generation failed: {error}"))?;
    let cert_path = tls_dir.join("server.pem");
    let key_path = tls_dir.join("server.key");
    write_private_file(&key_path, server_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, server_cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok(TlsFiles {
        cert_path,
        key_path,
        ca_cert_path: Some(ca_cert_path),
    })
}

/// The rustls configuration for `files`, with HTTP/2 and HTTP/1.1 offered through ALPN.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_path)
        .with_context(|| format!("cannot read {}", files.cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "{} holds no valid PEM certificate",
                files.cert_path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(anyhow!(
            "{} holds no certificate",
            files.cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_path).with_context(|| {
        format!(
            "cannot read a private key from {}",
            files.key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| anyhow!("TLS set-up failed: {error}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|error| anyhow!("the TLS certificate and key do not fit together: {error}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
