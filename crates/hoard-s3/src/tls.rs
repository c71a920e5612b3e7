//! The HTTP client every S3 request goes through, OpenDAL's and our own (bucket probe and
//! creation, region look-up), so that CA_CERT_DATA applies to all of them.

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::error::S3Error;

/// Every certificate in a PEM bundle, each checked to be a usable trust anchor.
pub fn parse_ca_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, S3Error> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = item.map_err(|e| S3Error::BadPem(e.to_string()))?;
        let mut store = rustls::RootCertStore::empty();
        store.add(cert.clone()).map_err(|e| {
            S3Error::BadPem(format!(
                "certificate {} cannot be a trust anchor: {e}",
                certs.len() + 1
            ))
        })?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err(S3Error::BadPem("no certificate found".into()));
    }
    Ok(certs)
}

/// Timeouts and limits of the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub connect_timeout: Duration,
    /// Longest time without progress on a request.
    pub read_timeout: Duration,
    pub max_idle_per_host: usize,
}

/// A reqwest client trusting the system roots plus `extra_roots`.
pub fn http_client(
    extra_roots: &[CertificateDer<'static>],
    limits: ClientLimits,
) -> Result<reqwest::Client, S3Error> {
    // reqwest is built without a bundled crypto provider (to avoid aws-lc's C build); ring is
    // installed as the process default unless the embedding program chose one already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut certs = Vec::with_capacity(extra_roots.len());
    for c in extra_roots {
        certs.push(
            reqwest::Certificate::from_der(c.as_ref())
                .map_err(|e| S3Error::BadPem(e.to_string()))?,
        );
    }
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .pool_max_idle_per_host(limits.max_idle_per_host)
        .user_agent(concat!("hoard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| S3Error::Setup(error_chain(&e)))
}

/// The error and all its causes as one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Whether a transport failure is a certificate the client does not trust.
pub fn is_certificate_error(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("certificate") || t.contains("unknownissuer") || t.contains("unknown issuer")
}

/// Turns a transport error into the error a user can act on.
pub fn classify_transport_error(endpoint: &str, e: &(dyn std::error::Error + 'static)) -> S3Error {
    let detail = error_chain(e);
    if endpoint.starts_with("https://") && is_certificate_error(&detail) {
        S3Error::UntrustedCertificate {
            endpoint: endpoint.to_string(),
            detail,
        }
    } else {
        S3Error::Unreachable {
            endpoint: endpoint.to_string(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_are_clear() {
        assert!(parse_ca_pem("")
            .unwrap_err()
            .to_string()
            .contains("no certificate found"));
        assert!(parse_ca_pem("hello world").is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = parse_ca_pem(garbage).unwrap_err().to_string();
        assert!(e.contains("CA_CERT_DATA"), "{e}");
        let not_b64 = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_pem(not_b64).is_err());
    }

    #[test]
    fn a_generated_ca_parses_alone_and_in_a_bundle() {
        let a = hoard_testkit::TestCa::generate().unwrap().ca_pem;
        let b = hoard_testkit::TestCa::generate().unwrap().ca_pem;
        assert_eq!(parse_ca_pem(&a).unwrap().len(), 1);
        assert_eq!(parse_ca_pem(&format!("{a}\n{b}")).unwrap().len(), 2);
    }
}
