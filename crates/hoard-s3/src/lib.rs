//! hoard-s3: from user configuration to an OpenDAL S3 [`Operator`].
//!
//! [`connect`] is the whole path: parse the CA bundle, build one HTTP client that trusts it
//! (used by OpenDAL and by our own requests), settle the region, check the bucket once without
//! retries (so a bad certificate or address fails at once, with an error that says what to
//! fix), create it on `init`, then build the operator with retry (jittered backoff), timeout
//! and concurrency layers. Everything the repository writes lives under the prefix.

#![warn(missing_docs)]

pub(crate) mod bucket;
pub mod crd;
mod credentials;
/// Errors of this crate.
pub mod error;
pub mod location;
pub mod open;
pub mod secrets;
pub(crate) mod tls;

use std::time::Duration;

use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{HttpTransporter, OperationContext, Operator};

pub use credentials::Credentials;
pub use error::S3Error;
pub use location::{BucketLookup, S3Location};
pub use open::{open, Connection, Location, OpenError, OpenMode};
pub use secrets::{SecretString, Secrets};

use bucket::{BucketClient, Presence};

/// Region S3 uses when none is configured, and where missing buckets are created.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Everything needed to reach one S3 repository.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Endpoint, bucket and prefix.
    pub location: S3Location,
    /// Keys, or the default chain.
    pub credentials: Credentials,
    /// Explicit region (configuration, `AWS_REGION`, `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// Extra trusted CAs (PEM), on top of the system roots.
    pub ca_pem: Option<String>,
    /// Path-style or virtual-host addressing.
    pub bucket_lookup: BucketLookup,
    /// Limit on connecting.
    pub connect_timeout: Duration,
    /// Per-request limit on any one operation; large uploads also get `io_timeout` per chunk.
    pub request_timeout: Duration,
    /// Requests in flight at once.
    pub max_connections: usize,
    /// Retries of a temporary failure, with jittered backoff.
    pub retries: usize,
}

impl S3Config {
    /// Defaults: 10 s to connect, 60 s per request, 8 connections, 5 retries.
    pub fn new(location: S3Location, credentials: Credentials) -> S3Config {
        S3Config {
            location,
            credentials,
            region: None,
            ca_pem: None,
            bucket_lookup: BucketLookup::Auto,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 8,
            retries: 5,
        }
    }

    /// Credentials and CA from secrets; static keys when both are present, else the default
    /// chain. Half a key pair, or MinIO's variable names, is an error that says what to set.
    pub fn from_secrets(location: S3Location, secrets: &Secrets) -> Result<S3Config, S3Error> {
        use secrets::*;
        let ak = secrets.get(AWS_ACCESS_KEY_ID);
        let sk = secrets.get(AWS_SECRET_ACCESS_KEY);
        let credentials = match (ak, sk) {
            (Some(ak), Some(sk)) => Credentials::Static {
                access_key_id: ak.to_string(),
                secret_access_key: sk.into(),
                session_token: secrets.get(AWS_SESSION_TOKEN).map(SecretString::from),
            },
            (Some(_), None) => {
                return Err(S3Error::Config(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(S3Error::Config(
                    "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into(),
                ))
            }
            (None, None) if !secrets.foreign_keys.is_empty() => {
                let verb = if secrets.foreign_keys.len() > 1 {
                    "are"
                } else {
                    "is"
                };
                return Err(S3Error::Config(format!(
                    "{} {verb} set, but hoard reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: set those instead",
                    secrets.foreign_keys.join(" and ")
                )));
            }
            // Empty keys would reach the default chain's environment source, which signs
            // with them and fails on "a credential that expires before the deadline".
            (None, None)
                if [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
                    .iter()
                    .any(|k| secrets.is_blank(k)) =>
            {
                return Err(S3Error::Config(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are empty: give both keys, or remove them to use the AWS default chain".into(),
                ));
            }
            (None, None) => Credentials::DefaultChain,
        };
        let mut cfg = S3Config::new(location, credentials);
        cfg.ca_pem = secrets.get(CA_CERT_DATA).map(str::to_string);
        cfg.region = secrets.bucket_info.as_ref().and_then(|b| b.region.clone());
        Ok(cfg)
    }
}

/// What [`connect`] does about a missing bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketMode {
    /// Create it (init).
    Create,
    /// Report [`S3Error::NoSuchBucket`].
    MustExist,
}

/// Checks a `CA_CERT_DATA` bundle the way [`connect`] will use it, and counts its
/// certificates: an operator can refuse a bad Secret when it is applied, before any backup
/// runs into it.
pub fn check_ca_pem(pem: &str) -> Result<usize, S3Error> {
    tls::parse_ca_pem(pem).map(|certs| certs.len())
}

/// Builds an operator for the repository under `cfg.location`.
pub async fn connect(cfg: &S3Config, mode: BucketMode) -> Result<Operator, S3Error> {
    let certs = match &cfg.ca_pem {
        Some(pem) => tls::parse_ca_pem(pem)?,
        None => Vec::new(),
    };
    let client = tls::http_client(
        &certs,
        tls::ClientLimits {
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.request_timeout,
            max_idle_per_host: cfg.max_connections,
        },
    )?;
    let loc = &cfg.location;
    let virtual_host = loc.use_virtual_host(cfg.bucket_lookup);
    let mut region = match (&cfg.region, &loc.host_region) {
        (Some(r), _) | (None, Some(r)) => r.clone(),
        (None, None) if loc.aws => bucket::aws_bucket_region(&client, &loc.bucket)
            .await
            .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        (None, None) => DEFAULT_REGION.to_string(),
    };
    let mut endpoint = aws_endpoint(loc, &region);
    let mut probe = BucketClient::new(
        client.clone(),
        &cfg.credentials,
        &endpoint,
        &loc.bucket,
        &loc.prefix,
        &region,
        virtual_host,
    );
    let mut presence = probe.presence().await?;
    if let Presence::WrongRegion(r) = &presence {
        tracing::info!(bucket = %loc.bucket, region = %r, "bucket lives in another region");
        region = r.clone();
        endpoint = aws_endpoint(loc, &region);
        probe = BucketClient::new(
            client.clone(),
            &cfg.credentials,
            &endpoint,
            &loc.bucket,
            &loc.prefix,
            &region,
            virtual_host,
        );
        presence = probe.presence().await?;
    }
    match (presence, mode) {
        (Presence::Missing, BucketMode::Create) => probe.create(&region).await?,
        (Presence::Missing, BucketMode::MustExist) => {
            return Err(S3Error::NoSuchBucket {
                endpoint: endpoint.clone(),
                bucket: loc.bucket.clone(),
            })
        }
        (Presence::Forbidden, _) => {
            tracing::debug!("HEAD on the bucket was refused; trying object access anyway")
        }
        _ => {}
    }

    let mut b = opendal::services::S3::default()
        .endpoint(&endpoint)
        .bucket(&loc.bucket)
        .region(&region)
        .root(&format!("/{}", loc.prefix));
    if virtual_host {
        b = b.enable_virtual_host_style();
    }
    // The same chain the bucket check signed with (static keys, or the default chain).
    b = b.credential_provider_chain(credentials::chain(&cfg.credentials, &client));
    let transport = HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(
        client,
    ));
    let op = Operator::new(b)
        .map_err(|e| S3Error::Setup(e.to_string()))?
        .layer(ConcurrentLimitLayer::new(cfg.max_connections))
        .layer(
            TimeoutLayer::new()
                .with_timeout(cfg.request_timeout)
                .with_io_timeout(cfg.request_timeout),
        )
        .layer(
            RetryLayer::new()
                .with_jitter()
                .with_max_times(cfg.retries)
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_notify(LogRetry),
        )
        .with_context(OperationContext::new().with_http_transport(transport));
    Ok(op)
}

/// AWS endpoints are made regional once the region is known.
fn aws_endpoint(loc: &S3Location, region: &str) -> String {
    if loc.aws && loc.host_region.is_none() {
        format!("https://s3.{region}.amazonaws.com")
    } else {
        loc.endpoint.clone()
    }
}

/// Logs each retry at warn level (the error never contains credentials).
struct LogRetry;

impl opendal::layers::RetryInterceptor for LogRetry {
    fn intercept(&self, ev: opendal::layers::RetryEvent<'_>) {
        tracing::warn!(
            "retry {} of {} in {:.1}s after a temporary error: {}",
            ev.attempt,
            ev.op,
            ev.retry_after.as_secs_f64(),
            ev.err
        );
    }
}
