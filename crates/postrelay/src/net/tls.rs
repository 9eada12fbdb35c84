//! TLS client settings for talking to relays: which certificates to trust
//! (a `ca_file`, the system roots, or webpki-roots as the last resort), the
//! deliberately non-verifying configuration used for `security = "encrypt"`
//! and `"may"`, and human-readable texts for handshake failures.
//!
//! Not for: opening connections or running handshakes (see
//! [`crate::net::stream`]), nor for deciding *when* TLS is required (that is
//! the delivery client's job, from the configured security level).
//!
//! Every configuration names its crypto provider explicitly (ring); nothing
//! here relies on a process-wide default provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Why a TLS client configuration could not be built. Each variant names
/// the file and says what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be opened or read.
    #[error("ca_file {path}: cannot read it: {source}")]
    CaFileRead {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The CA file is not PEM, or a PEM section is damaged.
    #[error("ca_file {path}: not a valid PEM file: {detail}")]
    CaFilePem {
        /// The file.
        path: PathBuf,
        /// What the PEM decoder reported.
        detail: String,
    },
    /// The CA file holds no `CERTIFICATE` section at all.
    #[error("ca_file {path}: contains no PEM \"CERTIFICATE\" section")]
    CaFileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot serve as a trust anchor.
    #[error("ca_file {path}: certificate #{index} is not a usable trust anchor: {detail}")]
    CaFileBadCertificate {
        /// The file.
        path: PathBuf,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// Why it was refused.
        detail: String,
    },
    /// rustls refused the configuration (should not happen with ring).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider used by every configuration built here.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A verifying client configuration: the chain must lead to a trusted root
/// and the certificate must be valid for the relay's host name (or IP
/// address).
///
/// With `ca_file`, exactly the certificates in that PEM file are trusted
/// (typical for an internal relay with its own CA). Without it, the
/// system's roots are used (`rustls-native-certs`), and the Mozilla roots
/// compiled into `webpki-roots` only when the system provides none.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let roots = match ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots(),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in iter.enumerate() {
        let cert = cert.map_err(|e| pem_error(path, e))?;
        roots
            .add(cert)
            .map_err(|e| TlsSetupError::CaFileBadCertificate {
                path: path.to_owned(),
                index: i + 1,
                detail: e.to_string(),
            })?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::CaFileEmpty {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsSetupError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsSetupError::CaFileRead {
            path: path.to_owned(),
            source,
        },
        other => TlsSetupError::CaFilePem {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!("loading the system's CA certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::debug!("ignored {ignored} unusable system CA certificates");
    }
    if added == 0 {
        tracing::warn!(
            "the system provides no CA certificates; using the Mozilla roots built into postrelay"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// A configuration that encrypts without authenticating the relay, for
/// `security = "encrypt"` (TLS required, certificate not checked) and
/// `security = "may"` (opportunistic STARTTLS).
///
/// Why: internal relays often present self-signed or expired certificates,
/// and opportunistic TLS (like Postfix's `may`) is still better than
/// plaintext against a passive eavesdropper. It gives no protection against
/// an active man in the middle; `security = "verify"` does.
///
/// The certificate chain and name are accepted whatever they are, but the
/// handshake signatures are still verified with the certificate's key, so
/// the session keys really are shared with whoever holds that key.
pub fn client_config_no_verify() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let verifier = AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            };
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// See [`client_config_no_verify`]: any certificate is accepted, handshake
/// signatures are checked.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The name to verify and send as SNI: an IP literal (IPv6 with or
/// without brackets) becomes an IP address name, anything else a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is neither a valid host name nor an IP address"))
}

/// `"TLSv1.3 TLS13_AES_256_GCM_SHA384"` for an established session.
pub fn describe_session(conn: &rustls::ClientConnection) -> String {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "TLS".to_owned(),
    };
    match conn.negotiated_cipher_suite() {
        Some(suite) => {
            let id = suite.suite();
            match id.as_str() {
                Some(name) => format!("{version} {name}"),
                None => format!("{version} {id:?}"),
            }
        }
        None => version,
    }
}

/// Who a failed handshake was with, for [`describe_error`].
pub struct Peer<'a> {
    /// The host connected to, as configured.
    pub host: &'a str,
    /// The name the certificate was checked against (`tls_name`, else
    /// `host`).
    pub cert_name: &'a str,
    /// The relay's name in the configuration.
    pub relay: &'a str,
}

/// A sentence for a failed handshake, suited to `queue show` and the mail
/// log. Verification failures say what to configure: a certificate for
/// another name points at `tls_name`, never at lowering `security`.
pub fn describe_error(e: &rustls::Error, peer: &Peer<'_>) -> String {
    let host = peer.host;
    let advice = "for an internal relay with its own CA set ca_file to that CA's certificate, \
                  or use security = \"encrypt\" to encrypt without verifying";
    let name_advice = |presented: &[String]| {
        let presented: Vec<String> = presented.iter().map(|n| plain_name(n)).collect();
        let is_for = match presented.as_slice() {
            [] => String::new(),
            names => format!(" (it is for {})", names.join(", ")),
        };
        let example = presented
            .iter()
            .find(|n| !n.starts_with('*'))
            .map_or("the name in its certificate", String::as_str);
        format!(
            "certificate verification failed for {host}: the certificate is not valid for the \
             name {:?}{is_for}; if the relay is reached by IP address or by another name, set \
             tls_name = \"{example}\" on relay \"{}\" (Postfix's smtp_tls_servername), or \
             set host to the name in the certificate",
            peer.cert_name, peer.relay
        )
    };
    match e {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => name_advice(&[]),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => name_advice(presented),
        rustls::Error::InvalidCertificate(cert) => {
            let what = match cert {
                CertificateError::UnknownIssuer => {
                    "certificate is not signed by a trusted CA (unknown issuer; self-signed?)"
                        .to_owned()
                }
                CertificateError::Expired => "certificate has expired".to_owned(),
                CertificateError::NotValidYet => "certificate is not valid yet".to_owned(),
                CertificateError::BadSignature => "certificate has a bad signature".to_owned(),
                other => other.to_string(),
            };
            format!("certificate verification failed for {host}: {what}; {advice}")
        }
        rustls::Error::NoCertificatesPresented => {
            format!("{host} presented no certificate; {advice}")
        }
        rustls::Error::AlertReceived(alert) => {
            format!("{host} aborted the TLS handshake (alert {alert:?})")
        }
        other => format!("TLS handshake with {host} failed: {other}"),
    }
}

/// A certificate name as rustls reports it (`DnsName("x")`,
/// `IpAddress(192.0.2.1)`) without the wrapping.
fn plain_name(reported: &str) -> String {
    for prefix in ["DnsName(", "IpAddress(", "UriName("] {
        if let Some(inner) = reported
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
        {
            return inner.trim_matches('"').to_owned();
        }
    }
    reported.to_owned()
}

/// Whether `bytes` start like a TLS record: handshake (22) or alert (21),
/// major version 3. A server that sends this before any greeting expects
/// TLS from the first byte (implicit TLS).
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

/// The bytes of a TLS ClientHello for `name`, to probe whether a silent
/// server is waiting for one (see the delivery client's mode detection).
pub fn client_hello(name: ServerName<'static>) -> Result<Vec<u8>, rustls::Error> {
    let mut conn = rustls::ClientConnection::new(client_config_no_verify(), name)?;
    let mut out = Vec::new();
    while conn.wants_write() {
        if conn.write_tls(&mut out).is_err() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert!(matches!(e, TlsSetupError::CaFileRead { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(matches!(e, TlsSetupError::CaFileEmpty { .. }), "{e}");
        assert!(e.to_string().contains("empty.pem"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        let mut f = std::fs::File::create(&garbage).unwrap();
        writeln!(
            f,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
        )
        .unwrap();
        let e = client_config(Some(&garbage)).unwrap_err();
        assert!(
            matches!(e, TlsSetupError::CaFileBadCertificate { index: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn ca_file_with_a_real_certificate_loads() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        client_config(Some(&path)).unwrap();
    }

    #[test]
    fn system_roots_are_never_empty() {
        assert!(!system_roots().is_empty());
    }

    #[test]
    fn names_and_records() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("smtp.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name").is_err());
        assert!(looks_like_tls_record(&[0x16, 0x03, 0x01]));
        assert!(looks_like_tls_record(&[0x15, 0x03]));
        assert!(!looks_like_tls_record(b"220 "));
        let hello = client_hello(server_name("localhost").unwrap()).unwrap();
        assert!(looks_like_tls_record(&hello), "{hello:?}");
    }
}
