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
    /// A setting is missing, conflicting or malformed; the message says which and what to set.
    Config(String),
    /// Configuration text that does not parse; the parser's error is the source.
    #[error("{what}: {source}")]
    Parse {
        /// What did not parse.
        what: String,
        #[source]
        /// The parser's error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("cannot read {what}: {source}")]
    /// A file could not be read.
    Read {
        /// Which file.
        what: String,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },
    #[error("CA_CERT_DATA is not usable: {0} (expected PEM text with one or more -----BEGIN CERTIFICATE----- blocks)")]
    /// CA_CERT_DATA (or `--cacert`) is not usable PEM.
    BadPem(String),
    #[error("the TLS certificate of {endpoint} is not trusted ({detail}): put the PEM of the CA that signed it in CA_CERT_DATA (or pass --cacert FILE)")]
    /// The server's certificate chain does not lead to a trusted CA.
    UntrustedCertificate {
        /// The endpoint.
        endpoint: String,
        /// What TLS said.
        detail: String,
    },
    #[error("cannot reach the S3 endpoint {endpoint}: {detail}")]
    /// The endpoint cannot be reached (DNS, connection, timeout).
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What failed.
        detail: String,
    },
    #[error("{}", refused_keys(key_id, bucket, code))]
    /// The server refused the credentials.
    AccessDenied {
        /// The access key id used (never the secret).
        key_id: String,
        /// The bucket.
        bucket: String,
        /// The server's error code.
        code: String,
    },
    /// The key's policy does not allow creating buckets (the request itself was authentic).
    #[error("{} may not create buckets: create bucket {bucket:?} (or grant the key s3:CreateBucket), then run again", key_holder(key_id))]
    CannotCreateBucket {
        /// The access key id used.
        key_id: String,
        /// The bucket that is missing.
        bucket: String,
    },
    /// The server refused the bucket check and said why.
    #[error("the S3 server at {endpoint} refused access to bucket {bucket:?}: HTTP {status} {code}: {message}")]
    Refused {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The HTTP status.
        status: u16,
        /// The server's error code (`InvalidToken`, `RequestTimeTooSkewed`, …).
        code: String,
        /// The server's message, and what to do about it where the code says.
        message: String,
    },
    /// The bucket does not exist (and was not to be created).
    #[error("bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket {
        /// The endpoint.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    #[error("creating bucket {bucket:?} failed: HTTP {status} {code}: {message}")]
    /// The server refused to create the bucket.
    CreateBucket {
        /// The bucket.
        bucket: String,
        /// The HTTP status.
        status: u16,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },
    #[error("S3 request to {endpoint} failed: HTTP {status} {detail}")]
    /// Another HTTP failure.
    Http {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What the server said.
        detail: String,
    },
    #[error("cannot set up the S3 client: {0}")]
    /// The HTTP client or operator could not be built.
    Setup(String),
}

/// The keys were refused: what to check depends on where they came from.
fn refused_keys(key_id: &str, bucket: &str, code: &str) -> String {
    let check = if key_id.is_empty() {
        "check the profile, web identity, credential_process or container credentials in use"
    } else {
        "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    };
    format!(
        "the S3 server refused {} for bucket {bucket:?} ({code}): {check}",
        key_holder(key_id)
    )
}

/// `access key id "AKIA…"`, or, for an empty id, the keys the AWS default chain found (hoard
/// never sees which).
pub(crate) fn key_holder(key_id: &str) -> String {
    if key_id.is_empty() {
        "the keys the AWS default credential chain found".to_string()
    } else {
        format!("access key id {key_id:?}")
    }
}
