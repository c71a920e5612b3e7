//! Bucket existence, creation and region, with SigV4-signed requests of our own: OpenDAL has
//! no CreateBucket. These requests go through the same client (and CA) as OpenDAL's, and
//! without retries, so a certificate or address problem fails at once with a clear error
//! instead of after a retry loop.

use bytes::Bytes;
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context, OsEnv, Signer};

use crate::credentials::{percent_encode, xml_field, Credentials};
use crate::error::key_holder;
use crate::error::S3Error;
use crate::tls::classify_transport_error;

/// Lets reqsign's credential providers (IMDS, ECS, STS) use our client.
#[derive(Debug, Clone)]
struct ReqwestSend(reqwest::Client);

impl reqsign_core::HttpSend for ReqwestSend {
    async fn http_send(
        &self,
        req: http::Request<Bytes>,
    ) -> reqsign_core::Result<http::Response<Bytes>> {
        let req = reqwest::Request::try_from(req)
            .map_err(|e| reqsign_core::Error::unexpected("building request").with_source(e))?;
        let resp = self
            .0
            .execute(req)
            .await
            .map_err(|e| reqsign_core::Error::unexpected("sending request").with_source(e))?;
        let mut b = http::Response::builder().status(resp.status());
        for (k, v) in resp.headers() {
            b = b.header(k, v);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| reqsign_core::Error::unexpected("reading response").with_source(e))?;
        b.body(body)
            .map_err(|e| reqsign_core::Error::unexpected("building response").with_source(e))
    }
}

pub(crate) struct BucketClient {
    client: reqwest::Client,
    signer: Signer<Credential>,
    endpoint: String,
    bucket: String,
    /// The repository's prefix: policies often allow listing below one prefix only.
    prefix: String,
    url: String,
    key_id: String,
}

pub(crate) enum Presence {
    Exists,
    Missing,
    /// HEAD was refused: a least-privilege key may still read and write objects.
    Forbidden,
    /// AWS says the bucket lives in another region.
    WrongRegion(String),
}

impl BucketClient {
    pub fn new(
        client: reqwest::Client,
        creds: &Credentials,
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        region: &str,
        virtual_host: bool,
    ) -> BucketClient {
        let ctx = Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_http_send(ReqwestSend(client.clone()))
            .with_env(OsEnv);
        let provider = crate::credentials::provider(creds, &client);
        let signer = Signer::new(ctx, provider, RequestSigner::new("s3", region));
        let url = if virtual_host {
            match endpoint.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{bucket}.{host}/"),
                None => format!("https://{bucket}.{endpoint}/"),
            }
        } else {
            format!("{endpoint}/{bucket}")
        };
        BucketClient {
            client,
            signer,
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            url,
            key_id: creds.access_key_id().to_string(),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        body: Bytes,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), S3Error> {
        self.send_to(&self.url, method, body).await
    }

    async fn send_to(
        &self,
        url: &str,
        method: http::Method,
        body: Bytes,
    ) -> Result<(http::StatusCode, http::HeaderMap, Bytes), S3Error> {
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .header(
                "x-amz-content-sha256",
                reqsign_core::hash::hex_sha256(&body),
            )
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(body)
            .map_err(|e| S3Error::parse(format!("invalid S3 endpoint {}", self.endpoint), e))?;
        let (mut parts, body) = req.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| {
            S3Error::Config(format!(
                "cannot sign S3 requests: {}",
                crate::tls::error_chain(&e)
            ))
        })?;
        let req = reqwest::Request::try_from(http::Request::from_parts(parts, body))
            .map_err(|e| S3Error::Setup(e.to_string()))?;
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| classify_transport_error(&self.endpoint, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| classify_transport_error(&self.endpoint, &e))?;
        Ok((status, headers, body))
    }

    pub async fn presence(&self) -> Result<Presence, S3Error> {
        let (status, headers, _) = self.send(http::Method::HEAD, Bytes::new()).await?;
        let region = header_region(&headers);
        match status.as_u16() {
            200..=299 => return Ok(Presence::Exists),
            404 => return Ok(Presence::Missing),
            301 | 400 if region.is_some() => {
                return Ok(Presence::WrongRegion(region.unwrap_or_default()))
            }
            _ => {}
        }
        // A HEAD answer has no body, so it cannot say why: ask again with a request whose
        // answer has one (a one-key listing), and read the server's code and message.
        let Some(why) = self.reason().await? else {
            return match status.as_u16() {
                401 | 403 => Ok(Presence::Forbidden),
                s => Err(S3Error::Http {
                    endpoint: self.endpoint.clone(),
                    status: s,
                    detail: format!("on HEAD of bucket {:?}", self.bucket),
                }),
            };
        };
        tracing::debug!(code = %why.code, "HEAD of the bucket refused");
        match why.code.as_str() {
            // The key may not even list the repository's objects, which every command does.
            "AccessDenied" | "AllAccessDisabled" => Err(why.refused(
                self,
                format!(
                    "{} may not list {:?} in this bucket, and hoard lists, reads, writes and deletes objects there: check the bucket name and the key's policy; if the bucket does not exist yet, create it first",
                    key_holder(&self.key_id),
                    if self.prefix.is_empty() { "/" } else { &self.prefix }
                ),
            )),
            "NoSuchBucket" => Ok(Presence::Missing),
            "PermanentRedirect" | "AuthorizationHeaderMalformed"
                if why.region.is_some() || region.is_some() =>
            {
                Ok(Presence::WrongRegion(
                    why.region.or(region).unwrap_or_default(),
                ))
            }
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "NotSignedUp" => {
                Err(S3Error::AccessDenied {
                    key_id: self.key_id.clone(),
                    bucket: self.bucket.clone(),
                    code: why.code,
                })
            }
            _ => {
                let hint = refusal_hint(&why.code);
                Err(why.refused(self, hint))
            }
        }
    }

    /// The server's error code and message for a one-key listing of the bucket, when it
    /// refuses one; `None` when it succeeds or answers without an error document.
    async fn reason(&self) -> Result<Option<Refusal>, S3Error> {
        let sep = if self.url.ends_with('/') { "" } else { "/" };
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("&prefix={}", percent_encode(&format!("{}/", self.prefix)))
        };
        let url = format!("{}{sep}?list-type=2&max-keys=1{prefix}", self.url);
        let (status, headers, body) = self.send_to(&url, http::Method::GET, Bytes::new()).await?;
        if status.is_success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&body);
        Ok(xml_field(&text, "Code").map(|code| Refusal {
            status: status.as_u16(),
            code,
            message: xml_field(&text, "Message").unwrap_or_default(),
            region: xml_field(&text, "Region").or_else(|| header_region(&headers)),
        }))
    }

    /// CreateBucket: no LocationConstraint in us-east-1, one for any other region. An existing
    /// bucket we own, or one created by a concurrent run, is success.
    pub async fn create(&self, region: &str) -> Result<(), S3Error> {
        let body = if region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ))
        };
        let (status, _, body) = self.send(http::Method::PUT, body).await?;
        if status.is_success() {
            tracing::info!(bucket = %self.bucket, %region, "created bucket");
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        let code = xml_field(&text, "Code").unwrap_or_default();
        match code.as_str() {
            "BucketAlreadyOwnedByYou" => Ok(()),
            // s3s-fs (and a lost creation race on some servers) says this for our own bucket:
            // it is ours if we can see it now.
            "BucketAlreadyExists" => match self.presence().await? {
                Presence::Exists | Presence::Forbidden => Ok(()),
                _ => Err(self.create_error(status.as_u16(), code, &text)),
            },
            "SignatureDoesNotMatch" | "InvalidAccessKeyId" => Err(S3Error::AccessDenied {
                key_id: self.key_id.clone(),
                bucket: self.bucket.clone(),
                code,
            }),
            // The keys are fine (the signature was accepted); the key's policy does not allow
            // creating buckets, as platforms' per-bucket keys do not.
            "AccessDenied" => Err(S3Error::CannotCreateBucket {
                key_id: self.key_id.clone(),
                bucket: self.bucket.clone(),
            }),
            _ => Err(self.create_error(status.as_u16(), code, &text)),
        }
    }

    fn create_error(&self, status: u16, code: String, text: &str) -> S3Error {
        S3Error::CreateBucket {
            bucket: self.bucket.clone(),
            status,
            code,
            message: xml_field(text, "Message").unwrap_or_default(),
        }
    }
}

/// Why a server refused a request, from its error document.
#[derive(Debug)]
struct Refusal {
    status: u16,
    code: String,
    message: String,
    /// The region it names (a redirect or a malformed-authorization error).
    region: Option<String>,
}

impl Refusal {
    /// The error for it, the server's message followed by `hint` (when there is one).
    fn refused(self, client: &BucketClient, hint: String) -> S3Error {
        S3Error::Refused {
            endpoint: client.endpoint.clone(),
            bucket: client.bucket.clone(),
            status: self.status,
            code: self.code,
            message: if hint.is_empty() {
                self.message
            } else {
                format!("{} ({hint})", self.message)
            },
        }
    }
}

fn header_region(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-amz-bucket-region")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// What to do about a refusal whose code names a cause in the user's hands.
fn refusal_hint(code: &str) -> String {
    match code {
        "InvalidToken" | "ExpiredToken" | "TokenRefreshRequired" => {
            "AWS_SESSION_TOKEN is not valid for these keys (expired, or from other keys): renew it, or unset it for long-term keys"
        }
        "RequestTimeTooSkewed" => {
            "this machine's clock differs from the server's by more than 15 minutes: set it right (NTP)"
        }
        "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
            "the bucket lives in another region: set it with -o s3.region=REGION or AWS_REGION"
        }
        "NoSuchBucket" => "check the bucket name",
        _ => "",
    }
    .to_string()
}

/// The region AWS reports for a bucket, from an unsigned HEAD (works for any bucket).
pub(crate) async fn aws_bucket_region(client: &reqwest::Client, bucket: &str) -> Option<String> {
    let resp = client
        .head(format!("https://{bucket}.s3.amazonaws.com/"))
        .send()
        .await
        .ok()?;
    resp.headers()
        .get("x-amz-bucket-region")?
        .to_str()
        .ok()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_fields() {
        use crate::credentials::xml_field;
        let x = "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>";
        assert_eq!(xml_field(x, "Code").as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_field(x, "Message").as_deref(), Some("gone"));
        assert_eq!(xml_field(x, "Nope"), None);
    }
}
