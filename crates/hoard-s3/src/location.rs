//! S3 repository URLs in restic's forms:
//!
//! | form | endpoint | addressing |
//! | --- | --- | --- |
//! | `s3:https://host:9000/bucket/prefix` | as given | path-style |
//! | `s3:http://host:9000/bucket/prefix` | as given (plain HTTP) | path-style |
//! | `s3:host/bucket/prefix` | `https://host` | path-style |
//! | `s3:s3.amazonaws.com/bucket/prefix` | AWS, region detected | virtual-host |
//! | `s3:s3.<region>.amazonaws.com/bucket/prefix` | AWS in `<region>` | virtual-host |

use crate::error::S3Error;

/// How requests name the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BucketLookup {
    /// Virtual-host for AWS, path-style for everything else.
    #[default]
    Auto,
    /// `https://bucket.host/key`.
    Dns,
    /// `https://host/bucket/key`.
    Path,
}

impl std::str::FromStr for BucketLookup {
    type Err = S3Error;
    fn from_str(s: &str) -> Result<Self, S3Error> {
        match s {
            "auto" => Ok(BucketLookup::Auto),
            "dns" | "virtual-host" => Ok(BucketLookup::Dns),
            "path" => Ok(BucketLookup::Path),
            other => Err(S3Error::Config(format!(
                "s3.bucket-lookup must be auto, dns or path, not {other:?}"
            ))),
        }
    }
}

/// Where an S3 repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Scheme, host and port, e.g. `https://minio.local:9000`.
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; empty for the bucket root.
    pub prefix: String,
    /// The endpoint is Amazon's.
    pub aws: bool,
    /// Region named by the host (`s3.eu-west-1.amazonaws.com`).
    pub host_region: Option<String>,
}

impl S3Location {
    /// Parses the part after `s3:`.
    pub fn parse(rest: &str) -> Result<S3Location, S3Error> {
        let bad = |why: &str| {
            S3Error::Config(format!(
                "invalid S3 repository {:?}: {why}",
                format!("s3:{rest}")
            ))
        };
        let (scheme, after) = match rest.split_once("://") {
            Some((s @ ("http" | "https"), a)) => (s, a),
            Some((s, _)) => {
                return Err(bad(&format!(
                    "unsupported scheme {s:?} (use http or https)"
                )))
            }
            None => ("https", rest),
        };
        let mut parts = after.splitn(2, '/');
        let host = parts.next().unwrap_or_default();
        let path = parts.next().unwrap_or_default().trim_matches('/');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (bucket, prefix) = match path.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (path, ""),
        };
        if bucket.is_empty() {
            return Err(bad("no bucket (expected s3:host/bucket[/prefix])"));
        }
        validate_bucket(bucket).map_err(|e| bad(&e))?;
        let hostname = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let aws = hostname == "amazonaws.com" || hostname.ends_with(".amazonaws.com");
        let host_region = aws.then(|| aws_region_of(&hostname)).flatten();
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            aws,
            host_region,
        })
    }

    /// Builds a location from an endpoint (with or without scheme; none means https), a bucket
    /// and a prefix, as a Kubernetes Repository or COSI BucketInfo gives them.
    pub fn from_parts(endpoint: &str, bucket: &str, prefix: &str) -> Result<S3Location, S3Error> {
        let ep = endpoint.trim_end_matches('/');
        let prefix = prefix.trim_matches('/');
        let joined = if prefix.is_empty() {
            format!("{ep}/{bucket}")
        } else {
            format!("{ep}/{bucket}/{prefix}")
        };
        S3Location::parse(&joined)
    }

    /// Whether requests name the bucket in the host (virtual-host style) rather than the path.
    pub fn use_virtual_host(&self, lookup: BucketLookup) -> bool {
        match lookup {
            BucketLookup::Auto => self.aws,
            BucketLookup::Dns => true,
            BucketLookup::Path => false,
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3:{}/{}", self.endpoint, self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// `s3.eu-west-1.amazonaws.com`, `s3-eu-west-1.amazonaws.com` and
/// `s3.dualstack.eu-west-1.amazonaws.com` name a region; `s3.amazonaws.com` does not.
fn aws_region_of(host: &str) -> Option<String> {
    let inner = host.strip_suffix(".amazonaws.com")?;
    let inner = inner
        .strip_prefix("s3.")
        .or_else(|| inner.strip_prefix("s3-"))?;
    let inner = inner.strip_prefix("dualstack.").unwrap_or(inner);
    (!inner.is_empty() && !inner.contains('.')).then(|| inner.to_string())
}

/// S3's bucket naming rules, loosely (3–63 characters of a–z, 0–9, `.`, `-`, `_`).
fn validate_bucket(b: &str) -> Result<(), String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'));
    if !(3..=63).contains(&b.len()) || !ok_chars {
        return Err(format!(
            "bucket name {b:?} is not valid (3-63 lowercase letters, digits, '.', '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_url_forms() {
        let l = S3Location::parse("https://minio.local:9000/backups/team/a").unwrap();
        assert_eq!(
            (
                l.endpoint.as_str(),
                l.bucket.as_str(),
                l.prefix.as_str(),
                l.aws
            ),
            ("https://minio.local:9000", "backups", "team/a", false)
        );
        let l = S3Location::parse("http://127.0.0.1:9000/b-1").unwrap();
        assert_eq!(
            (l.endpoint.as_str(), l.prefix.as_str()),
            ("http://127.0.0.1:9000", "")
        );
        let l = S3Location::parse("minio.local/bkt/p/").unwrap();
        assert_eq!(
            (l.endpoint.as_str(), l.bucket.as_str(), l.prefix.as_str()),
            ("https://minio.local", "bkt", "p")
        );
        let l = S3Location::parse("s3.amazonaws.com/bkt/x").unwrap();
        assert!(l.aws && l.host_region.is_none() && l.use_virtual_host(BucketLookup::Auto));
        let l = S3Location::parse("s3.eu-central-1.amazonaws.com/bkt").unwrap();
        assert_eq!(l.host_region.as_deref(), Some("eu-central-1"));
        assert!(!l.use_virtual_host(BucketLookup::Path));
        assert_eq!(
            S3Location::parse("s3-us-west-2.amazonaws.com/bkt")
                .unwrap()
                .host_region
                .as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            l.to_string(),
            "s3:https://s3.eu-central-1.amazonaws.com/bkt"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        for bad in ["https://host", "host/", "ftp://h/b", "/bkt", "host/UPPER"] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid S3 repository"), "{bad}: {e}");
        }
    }

    #[test]
    fn from_parts_defaults_to_https() {
        let l = S3Location::from_parts("minio.example:9000", "bkt", "/a/b/").unwrap();
        assert_eq!(l.to_string(), "s3:https://minio.example:9000/bkt/a/b");
        let l = S3Location::from_parts("http://10.0.0.1:9000/", "bkt", "").unwrap();
        assert_eq!(l.endpoint, "http://10.0.0.1:9000");
    }
}
