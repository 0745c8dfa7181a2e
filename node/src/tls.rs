//! Diameter over TLS (RFC 6733 sections 2.1 and 13): TLS 1.2 or 1.3 from the first byte
//! of the connection, with mutual certificate authentication (section 13.1: the server
//! MUST request a certificate from the client), both sides trusting one configured CA
//! (section 13.2). Built on rustls with the ring provider, the project's crypto already;
//! `tokio-rustls` wraps a `TcpStream` into a stream the drivers read and write as they
//! did the plain one.
//!
//! * [`server_config`] / [`accept`]: a listener's side; [`client_config`] / [`connect`]:
//!   a client's (the AAA's link to a home AAA, and the ePDG's Diameter client).
//! * [`certificate_identities`]: the names a peer's certificate carries, for the caller
//!   to hold against the Origin-Host of its CER.
//! * [`write_lab_pki`]: a CA and one certificate per Diameter identity for the lab, made
//!   with rcgen (ECDSA P-256), the keys written 0600.
//!
//! Files may be PEM or DER (told by a leading `-----BEGIN`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;

pub use rustls::{ClientConfig, ServerConfig};
pub use tokio_rustls::client::TlsStream as ClientStream;
pub use tokio_rustls::server::TlsStream as ServerStream;

/// The files of one TLS end: its certificate chain, its key, the CA it trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub ca: PathBuf,
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what}", path.display())]
    Content { path: PathBuf, what: String },
    #[error("writing {}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS peer verifier: {0}")]
    Verifier(String),
    #[error("making the lab PKI: {0}")]
    Pki(#[from] rcgen::Error),
}

/// ring, the provider of every TLS config made here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| bytes[start..].starts_with(b"-----BEGIN"))
}

/// The certificates of a PEM file (every CERTIFICATE block) or a DER file (one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let content = |what: String| TlsError::Content {
        path: path.into(),
        what,
    };
    let certificates = if is_pem(&bytes) {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| content(format!("bad PEM: {e}")))?
    } else {
        vec![CertificateDer::from(bytes)]
    };
    if certificates.is_empty() {
        return Err(content("no certificate in it".into()));
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, SEC1 or PKCS#1) or a DER file (PKCS#8).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    if is_pem(&bytes) {
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Content {
            path: path.into(),
            what: format!("no private key in it: {e}"),
        })
    } else {
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bytes)))
    }
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(ca)? {
        roots.add(certificate).map_err(|e| TlsError::Content {
            path: ca.into(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A listener's TLS: our certificate, and a client certificate required and verified
/// against the CA (RFC 6733 section 13.1).
pub fn server_config(credentials: &Credentials) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&credentials.ca)?, provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certificates(&credentials.certificate)?,
            load_private_key(&credentials.private_key)?,
        )?;
    Ok(Arc::new(config))
}

/// A client's TLS: the server's certificate verified against the CA (and its name, at
/// [`connect`]), our certificate presented when asked.
pub fn client_config(credentials: &Credentials) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .with_root_certificates(roots(&credentials.ca)?)
        .with_client_auth_cert(
            load_certificates(&credentials.certificate)?,
            load_private_key(&credentials.private_key)?,
        )?;
    Ok(Arc::new(config))
}

/// The TLS handshake as a server on an accepted connection.
pub async fn accept(
    config: Arc<ServerConfig>,
    stream: TcpStream,
) -> io::Result<ServerStream<TcpStream>> {
    tokio_rustls::TlsAcceptor::from(config).accept(stream).await
}

/// The TLS handshake as a client toward `server_name` (the peer's Diameter identity,
/// which its certificate must carry) on a connected stream.
pub async fn connect(
    config: Arc<ClientConfig>,
    stream: TcpStream,
    server_name: &str,
) -> io::Result<ClientStream<TcpStream>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// The identities a certificate names: its subjectAltName DNS names, or, without any,
/// its subject Common Names. Empty for a certificate that does not parse.
pub fn certificate_identities(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate.as_ref()) else {
        return Vec::new();
    };
    let dns: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if !dns.is_empty() {
        return dns;
    }
    parsed
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect()
}

/// The identities of the certificate the client of `stream` presented (its first, the
/// end entity's).
pub fn client_identities(stream: &ServerStream<TcpStream>) -> Vec<String> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(certificate_identities)
        .unwrap_or_default()
}

/// The files [`write_lab_pki`] writes for `host`: its certificate and its key.
pub fn lab_files(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{host}.pem")),
        dir.join(format!("{host}.key")),
    )
}

/// A lab PKI in `dir` (created if missing): a fresh CA (`ca.pem`, its key is not kept)
/// and, for each host, a certificate naming it (subjectAltName DNS and Common Name; for
/// TLS servers and clients alike) in `HOST.pem` and its PKCS#8 key in `HOST.key`, mode
/// 0600. ECDSA P-256. Returns the files written.
pub fn write_lab_pki(dir: &Path, hosts: &[String]) -> Result<Vec<PathBuf>, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.into(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pmip lab Diameter CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let write = |path: PathBuf, text: &str, secret: bool| -> Result<PathBuf, TlsError> {
        let written = if secret {
            crate::secret_file::write_atomically(&path, &[text.as_bytes()])
        } else {
            std::fs::write(&path, text)
        };
        written.map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    let mut files = vec![write(dir.join("ca.pem"), &ca.pem(), false)?];
    for host in hosts {
        let mut params = CertificateParams::new(vec![host.clone()])?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let certificate = params.signed_by(&key, &issuer)?;
        let (certificate_path, key_path) = lab_files(dir, host);
        files.push(write(certificate_path, &certificate.pem(), false)?);
        files.push(write(key_path, &key.serialize_pem(), true)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn credentials(dir: &Path, host: &str) -> Credentials {
        let (certificate, private_key) = lab_files(dir, host);
        Credentials {
            certificate,
            private_key,
            ca: dir.join("ca.pem"),
        }
    }

    /// A TLS server on loopback that echoes one line back prefixed with the client's
    /// certificate identities; the client's result.
    async fn exchange(
        server: &Credentials,
        client: &Credentials,
        server_name: &str,
    ) -> io::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server_config = server_config(server).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            let mut tls = accept(server_config, stream).await?;
            let names = client_identities(&tls);
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await?;
            tls.write_all(format!("{names:?} {}", String::from_utf8_lossy(&buf)).as_bytes())
                .await?;
            tls.shutdown().await?;
            io::Result::Ok(())
        });
        let stream = TcpStream::connect(addr).await?;
        let result = async {
            let mut tls = connect(client_config(client).unwrap(), stream, server_name).await?;
            tls.write_all(b"hello").await?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer).await?;
            io::Result::Ok(answer)
        }
        .await;
        let _ = task.await;
        result
    }

    #[tokio::test]
    async fn mutual_tls_with_the_lab_pki_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = ["aaa.home.test".to_string(), "aaa.visited.test".to_string()];
        let files = write_lab_pki(dir.path(), &hosts).unwrap();
        assert_eq!(files.len(), 5);
        let key = std::fs::metadata(lab_files(dir.path(), "aaa.home.test").1).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let home = credentials(dir.path(), "aaa.home.test");
        let visited = credentials(dir.path(), "aaa.visited.test");
        let answer = exchange(&home, &visited, "aaa.home.test").await.unwrap();
        assert_eq!(answer, "[\"aaa.visited.test\"] hello");

        // The server's certificate must name the host the client asked for.
        assert!(exchange(&home, &visited, "aaa.other.test").await.is_err());

        // A client whose certificate comes from another CA is refused by the server.
        let other = tempfile::tempdir().unwrap();
        write_lab_pki(other.path(), &hosts).unwrap();
        let stranger = Credentials {
            ca: dir.path().join("ca.pem"),
            ..credentials(other.path(), "aaa.visited.test")
        };
        assert!(exchange(&home, &stranger, "aaa.home.test").await.is_err());
    }

    #[test]
    fn der_files_load_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_lab_pki(dir.path(), &["x.test".to_string()]).unwrap();
        let pem = load_certificates(&dir.path().join("x.test.pem")).unwrap();
        let der = dir.path().join("x.der");
        std::fs::write(&der, pem[0].as_ref()).unwrap();
        assert_eq!(load_certificates(&der).unwrap(), pem);
        assert_eq!(certificate_identities(&pem[0]), vec!["x.test".to_string()]);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "-----BEGIN NOTHING-----\n-----END NOTHING-----\n").unwrap();
        let e = load_certificates(&empty).unwrap_err().to_string();
        assert!(e.contains("empty.pem"), "{e}");
        let e = load_private_key(&dir.path().join("missing.key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.key"), "{e}");
    }
}
