//! A real S3 server for tests and examples: s3s with its filesystem backend, verifying SigV4
//! signatures, listening on 127.0.0.1 over plain HTTP or over TLS with a CA generated here.
//!
//! The server runs on its own thread and runtime, so synchronous tests, async tests and CLI
//! processes spawned by tests can all use it. It stops when the [`S3Server`] is dropped.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use s3s::auth::SimpleAuth;

mod stub;
use s3s::service::S3ServiceBuilder;
pub use stub::{HttpStub, StubRequest};
use tokio::sync::oneshot;

/// Access key the server accepts.
pub const ACCESS_KEY: &str = "HOARDTESTACCESSKEY";
/// Secret key the server accepts.
pub const SECRET_KEY: &str = "hoard-test-secret-key-0123456789abcdef";

/// A least-privilege key, as platforms hand out one per bucket (COSI, Hikube): it may use the
/// objects of [`SCOPED_BUCKET`] only, and may not create, delete or list buckets. As on AWS, a
/// bucket that does not exist is reported missing to it, and any other one is denied.
pub const SCOPED_ACCESS_KEY: &str = "HOARDSCOPEDACCESSKEY";
/// Secret key of [`SCOPED_ACCESS_KEY`].
pub const SCOPED_SECRET_KEY: &str = "hoard-scoped-secret-key-0123456789abcd";
/// The bucket [`SCOPED_ACCESS_KEY`] may use; it exists from the start, as a provisioned one.
pub const SCOPED_BUCKET: &str = "provisioned-bucket";

/// Read-only keys, as handed out for restores: every bucket's objects may be read and listed,
/// nothing may be written or deleted.
pub const READONLY_ACCESS_KEY: &str = "HOARDREADONLYACCESSKEY";
/// Secret key of [`READONLY_ACCESS_KEY`].
pub const READONLY_SECRET_KEY: &str = "hoard-readonly-secret-0123456789abcdef";

/// Temporary credentials, as STS, a container-credentials endpoint or an instance profile hand
/// them out: requests signed with this key must carry [`SESSION_TOKEN`] in
/// `x-amz-security-token`, or the server answers `InvalidToken` (s3s alone ignores tokens).
pub const TEMPORARY_ACCESS_KEY: &str = "ASIAHOARDTEMPORARYKEY";
/// Secret key of [`TEMPORARY_ACCESS_KEY`].
pub const TEMPORARY_SECRET_KEY: &str = "hoard-temporary-secret-0123456789abcdef";
/// The session token that goes with [`TEMPORARY_ACCESS_KEY`].
pub const SESSION_TOKEN: &str = "hoard-test-session-token/FwoGZXIvYXdzEBYaDH";

/// What the keys other than [`ACCESS_KEY`] may do, as an IAM policy and STS would decide.
struct Policy {
    root: PathBuf,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Policy {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        };
        // As AWS: a security-token header without a token is a malformed token.
        if cx
            .headers()
            .get("x-amz-security-token")
            .is_some_and(|v| v.is_empty())
        {
            return Err(s3s::s3_error!(InvalidToken, "The security token is empty."));
        }
        match creds.access_key.as_str() {
            TEMPORARY_ACCESS_KEY => {
                // In the header, or for a presigned URL in its query (as AWS takes it).
                let header = cx
                    .headers()
                    .get("x-amz-security-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let token = header.or_else(|| query_value(cx.uri(), "X-Amz-Security-Token"));
                if token.as_deref() == Some(SESSION_TOKEN) {
                    Ok(())
                } else {
                    Err(s3s::s3_error!(
                        InvalidToken,
                        "The provided token is malformed or otherwise invalid."
                    ))
                }
            }
            READONLY_ACCESS_KEY => {
                let op = cx.s3_op().name();
                if op.starts_with("Get") || op.starts_with("Head") || op.starts_with("List") {
                    Ok(())
                } else {
                    Err(s3s::s3_error!(AccessDenied, "Access Denied"))
                }
            }
            SCOPED_ACCESS_KEY => {
                let bucket = cx.s3_path().get_bucket_name().unwrap_or_default();
                let bucket_admin = matches!(
                    cx.s3_op().name(),
                    "CreateBucket" | "DeleteBucket" | "ListBuckets"
                );
                let missing = !bucket.is_empty() && !self.root.join(bucket).is_dir();
                if bucket_admin {
                    Err(s3s::s3_error!(AccessDenied, "Access Denied"))
                } else if bucket == SCOPED_BUCKET || missing {
                    Ok(()) // a missing bucket is answered NoSuchBucket by the backend
                } else {
                    Err(s3s::s3_error!(AccessDenied, "Access Denied"))
                }
            }
            _ => Ok(()),
        }
    }
}

/// One query parameter, percent-decoded.
fn query_value(uri: &hyper::Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Any error of setting the server up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A CA and a server certificate for 127.0.0.1 and localhost signed by it.
pub struct TestCa {
    /// The CA's certificate, PEM (what CA_CERT_DATA holds).
    pub ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl TestCa {
    /// A fresh CA and a server certificate it signed.
    pub fn generate() -> Result<TestCa, BoxError> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "hoard test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "hoard test server");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(TestCa {
            ca_pem: ca_cert.pem(),
            cert: leaf_cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
        })
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, BoxError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// A running server; dropping it stops the server and removes its data.
pub struct S3Server {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// PEM of the CA that signed the server's certificate (TLS servers only).
    pub ca_pem: Option<String>,
    /// Where buckets live: one directory per bucket, objects as files.
    pub root: PathBuf,
    /// Every request served, as `METHOD /path` (see [`S3Server::requests`]).
    log: Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    /// Plain HTTP.
    pub fn http() -> Result<S3Server, BoxError> {
        Self::start(None)
    }

    /// TLS with a freshly generated CA (see [`S3Server::ca_pem`]).
    pub fn https() -> Result<S3Server, BoxError> {
        Self::start(Some(TestCa::generate()?))
    }

    /// Starts a server, over TLS with `tls`, else plain HTTP.
    pub fn start(tls: Option<TestCa>) -> Result<S3Server, BoxError> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_path_buf();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        std::fs::create_dir(root.join(SCOPED_BUCKET))?;
        let fs = s3s_fs::FileSystem::new(&root).map_err(|e| format!("s3s-fs: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(fs);
        let mut auth = SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY);
        auth.register(SCOPED_ACCESS_KEY.into(), SCOPED_SECRET_KEY.into());
        auth.register(TEMPORARY_ACCESS_KEY.into(), TEMPORARY_SECRET_KEY.into());
        auth.register(READONLY_ACCESS_KEY.into(), READONLY_SECRET_KEY.into());
        builder.set_auth(auth);
        builder.set_access(Policy { root: root.clone() });
        let s3 = builder.build();
        let log: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let seen = log.clone();
        // Each request is written down before s3s serves it, for tests that count requests.
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                if let Ok(mut l) = seen.lock() {
                    l.push(format!("{} {}", req.method(), req.uri().path()));
                }
                hyper::service::Service::call(&s3, req)
            });
        let acceptor = match &tls {
            Some(ca) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
                ca.server_config()?,
            ))),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("s3-test-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                loop {
                    let socket = tokio::select! {
                        r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut stop_rx => break,
                    };
                    let service = service.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let http = ConnBuilder::new(TokioExecutor::new());
                        match acceptor {
                            Some(a) => {
                                if let Ok(tls) = a.accept(socket).await {
                                    let _ = http.serve_connection(TokioIo::new(tls), service).await;
                                }
                            }
                            None => {
                                let _ = http.serve_connection(TokioIo::new(socket), service).await;
                            }
                        }
                    });
                }
            });
                runtime.shutdown_background();
            })?;
        Ok(S3Server {
            endpoint: format!("{scheme}://{addr}"),
            addr,
            ca_pem: tls.map(|t| t.ca_pem),
            root,
            log,
            _dir: dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The requests served since the last call (`GET /bucket/key`, `PUT …`, …), oldest first.
    pub fn requests(&self) -> Vec<String> {
        match self.log.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => Vec::new(),
        }
    }

    /// Every object key in a bucket, relative to the bucket.
    pub fn object_keys(&self, bucket: &str) -> Vec<String> {
        let base = self.root.join(bucket);
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&base) {
                    let name = rel.to_string_lossy().into_owned();
                    // s3s-fs keeps metadata and upload state in hidden side files.
                    if !name.split('/').any(|c| c.starts_with('.')) {
                        out.push(name);
                    }
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
