use thiserror::Error;

impl S3Error {
    /// `what` did not parse; `source` says why.
    pub fn parse(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> S3Error {
        S3Error::Parse {
            what: what.into(),
            source: Box::new(source),
        }
    }
}

/// Configuration and connection errors. Each message names what to fix; none contains a
/// secret.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum S3Error {
    #[error("{0}")]
    Config(String),
    /// Configuration text that does not parse; the parser's error is the source.
    #[error("{what}: {source}")]
    Parse {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CA_CERT_DATA is not usable: {0} (expected PEM text with one or more -----BEGIN CERTIFICATE----- blocks)")]
    BadPem(String),
    #[error("the TLS certificate of {endpoint} is not trusted ({detail}): put the PEM of the CA that signed it in CA_CERT_DATA (or pass --cacert FILE)")]
    UntrustedCertificate { endpoint: String, detail: String },
    #[error("cannot reach the S3 endpoint {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the S3 server refused access key id {key_id:?} for bucket {bucket:?} ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    AccessDenied {
        key_id: String,
        bucket: String,
        code: String,
    },
    #[error("bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket { endpoint: String, bucket: String },
    #[error("creating bucket {bucket:?} failed: HTTP {status} {code}: {message}")]
    CreateBucket {
        bucket: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("S3 request to {endpoint} failed: HTTP {status} {detail}")]
    Http {
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error("cannot set up the S3 client: {0}")]
    Setup(String),
}
