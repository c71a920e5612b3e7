//! Where credentials come from, the way Kubernetes hands them to a pod.
//!
//! Keys: `RESTIC_PASSWORD`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `CA_CERT_DATA`. Sources:
//! - environment variables;
//! - a directory with one file per key (a mounted Secret);
//! - a Secret manifest, YAML or JSON, with base64 `data` and/or plain `stringData` (also inside
//!   a `kind: List` or a multi-document file);
//! - a COSI `BucketInfo` document (`spec.bucketName`, `spec.secretS3.{endpoint, region,
//!   accessKeyID, accessSecretKey}`), on its own or base64-encoded under a Secret's
//!   `BucketInfo` key.
//!
//! Values never appear in Debug output or errors.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::S3Error;

/// The repository password.
pub const RESTIC_PASSWORD: &str = "RESTIC_PASSWORD";
/// S3 access key id.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
/// S3 secret access key.
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Session token of temporary S3 credentials.
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
/// PEM of the CA(s) that signed the S3 server's certificate.
pub const CA_CERT_DATA: &str = "CA_CERT_DATA";

/// The web console's access token (`hoard serve`).
pub const HOARD_SERVE_TOKEN: &str = "HOARD_SERVE_TOKEN";

/// Keys read from the environment and from secret sources.
pub const KEYS: [&str; 6] = [
    RESTIC_PASSWORD,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    CA_CERT_DATA,
    HOARD_SERVE_TOKEN,
];

/// A secret value: wiped from memory when dropped, never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(Zeroizing::new(s))
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString(Zeroizing::new(s.to_string()))
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(..)")
    }
}

/// Bucket facts a COSI BucketInfo carries besides credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketInfo {
    /// `spec.bucketName`.
    pub bucket: String,
    /// `spec.secretS3.endpoint`.
    pub endpoint: String,
    /// `spec.secretS3.region`, when not empty.
    pub region: Option<String>,
}

/// A set of secret values by key.
#[derive(Default, Clone)]
pub struct Secrets {
    values: BTreeMap<String, Zeroizing<String>>,
    /// Set when the secret was a COSI BucketInfo.
    pub bucket_info: Option<BucketInfo>,
    /// Keys like MINIO_ACCESS_KEY that were seen but are not used, for a helpful error.
    pub foreign_keys: Vec<String>,
    /// `metadata.name` when the values came from a Secret manifest.
    pub name: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .field("bucket_info", &self.bucket_info)
            .finish()
    }
}

const FOREIGN: [&str; 2] = ["MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"];

impl Secrets {
    /// A value, when present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Whether `key` is given with nothing in it (an empty Secret key or variable), which
    /// [`Secrets::get`] treats as not given.
    pub fn is_blank(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| v.is_empty())
    }

    /// Sets a value.
    pub fn set(&mut self, key: &str, value: String) {
        self.values.insert(key.to_string(), Zeroizing::new(value));
    }

    /// Forgets `key` (its value is wiped).
    pub fn remove(&mut self, key: &str) {
        self.values.remove(key);
    }

    /// Values from `other` replace ours.
    pub fn overlay(&mut self, other: Secrets) {
        self.values.extend(other.values);
        if other.bucket_info.is_some() {
            self.bucket_info = other.bucket_info;
        }
        if other.name.is_some() {
            self.name = other.name;
        }
        self.foreign_keys.extend(other.foreign_keys);
    }

    /// The keys from the environment (and MinIO's names, to say they are not read).
    pub fn from_env() -> Secrets {
        let mut s = Secrets::default();
        for k in KEYS {
            if let Ok(v) = std::env::var(k) {
                s.set(k, v);
            }
        }
        s.foreign_keys = FOREIGN
            .iter()
            .filter(|k| std::env::var_os(k).is_some())
            .map(|k| k.to_string())
            .collect();
        s
    }

    /// A Secret's `stringData` as a map (for a program that holds the values already, e.g.
    /// from the Kubernetes API): the same keys as everywhere else, a `BucketInfo` key parsed,
    /// trailing newlines of single-line values dropped, MinIO's names reported.
    ///
    /// ```
    /// let s = hoard_s3::Secrets::from_map([
    ///     ("RESTIC_PASSWORD", "pw"),
    ///     ("AWS_ACCESS_KEY_ID", "AKIA"),
    ///     ("AWS_SECRET_ACCESS_KEY", "sk\n"),
    /// ])?;
    /// assert_eq!(s.get("AWS_SECRET_ACCESS_KEY"), Some("sk"));
    /// # Ok::<(), hoard_s3::S3Error>(())
    /// ```
    pub fn from_map<K, V>(values: impl IntoIterator<Item = (K, V)>) -> Result<Secrets, S3Error>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut s = Secrets::default();
        for (k, v) in values {
            put(&mut s, k.as_ref(), v.into())?;
        }
        Ok(s)
    }

    /// Reads a mounted secret directory or a manifest file.
    pub fn from_path(path: &Path) -> Result<Secrets, S3Error> {
        let md = std::fs::metadata(path).map_err(|source| S3Error::Read {
            what: format!("secret {}", path.display()),
            source,
        })?;
        if md.is_dir() {
            Self::from_dir(path)
        } else {
            let text = std::fs::read_to_string(path).map_err(|source| S3Error::Read {
                what: format!("secret {}", path.display()),
                source,
            })?;
            Self::from_manifest(&text)
                .map_err(|e| S3Error::parse(format!("secret {}", path.display()), e))
        }
    }

    fn from_dir(dir: &Path) -> Result<Secrets, S3Error> {
        let mut s = Secrets::default();
        let read = |name: &str| -> Result<Option<String>, S3Error> {
            match std::fs::read(dir.join(name)) {
                Ok(b) => String::from_utf8(b).map(Some).map_err(|_| {
                    S3Error::Config(format!(
                        "secret file {}/{name} is not UTF-8 text",
                        dir.display()
                    ))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(S3Error::Config(format!(
                    "cannot read secret file {}/{name}: {e}",
                    dir.display()
                ))),
            }
        };
        for k in KEYS {
            if let Some(v) = read(k)? {
                s.set(k, trim_value(k, v));
            }
        }
        if let Some(info) = read("BucketInfo")? {
            s.overlay(Self::from_bucket_info_text(&info)?);
        }
        s.foreign_keys = FOREIGN
            .iter()
            .filter(|k| dir.join(k).exists())
            .map(|k| k.to_string())
            .collect();
        Ok(s)
    }

    /// Parses YAML or JSON: a Secret, a BucketInfo, a `kind: List`, or several documents.
    pub fn from_manifest(text: &str) -> Result<Secrets, S3Error> {
        let mut out = Secrets::default();
        let mut found = false;
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(doc)
                .map_err(|e| S3Error::parse("not valid YAML or JSON", e))?;
            found |= collect(&value, &mut out)?;
        }
        if !found {
            return Err(S3Error::Config(
                "no Secret (kind: Secret) or BucketInfo (spec.bucketName and spec.secretS3) found"
                    .into(),
            ));
        }
        Ok(out)
    }

    fn from_bucket_info_text(text: &str) -> Result<Secrets, S3Error> {
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
            .map_err(|e| S3Error::parse("BucketInfo is not valid JSON or YAML", e))?;
        let mut s = Secrets::default();
        if !collect(&value, &mut s)? {
            return Err(S3Error::Config(
                "the BucketInfo key holds no BucketInfo (expected spec.bucketName and spec.secretS3, with or without kind: BucketInfo)".into(),
            ));
        }
        Ok(s)
    }
}

/// A password or key file may end in a newline from `echo`; PEM keeps its text.
fn trim_value(key: &str, v: String) -> String {
    if key == CA_CERT_DATA {
        v
    } else {
        v.trim_end_matches(['\n', '\r']).to_string()
    }
}

/// Whether a document without a `kind` is a COSI BucketInfo by its shape: platforms hand it
/// out without `apiVersion` and `kind` (Hikube's documented Secret does), but its `spec` has
/// `bucketName` and a `secretS3` or `secretAzure`.
fn looks_like_bucket_info(v: &serde_yaml_ng::Value) -> bool {
    let Some(spec) = v.get("spec").and_then(|s| s.as_mapping()) else {
        return false;
    };
    let has = |k: &str| spec.contains_key(serde_yaml_ng::Value::from(k));
    has("bucketName") && (has("secretS3") || has("secretAzure") || has("authenticationType"))
}

/// Adds what one document holds; returns whether it was a Secret, BucketInfo or List of them.
fn collect(v: &serde_yaml_ng::Value, out: &mut Secrets) -> Result<bool, S3Error> {
    let mut kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    if kind.is_empty() && looks_like_bucket_info(v) {
        kind = "BucketInfo";
    }
    match kind {
        "List" => {
            let mut any = false;
            if let Some(items) = v.get("items").and_then(|i| i.as_sequence()) {
                for item in items {
                    any |= collect(item, out)?;
                }
            }
            Ok(any)
        }
        "Secret" => {
            let name = v
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("<unnamed>");
            let b64 = base64::engine::general_purpose::STANDARD;
            let mut s = Secrets {
                name: Some(name.to_string()),
                ..Default::default()
            };
            if let Some(data) = v.get("data").and_then(|d| d.as_mapping()) {
                for (k, val) in data {
                    let (Some(k), Some(val)) = (k.as_str(), val.as_str()) else {
                        continue;
                    };
                    let clean: String = val.chars().filter(|c| !c.is_whitespace()).collect();
                    let bytes = b64.decode(clean).map_err(|_| {
                        S3Error::Config(format!("Secret {name}: data.{k} is not valid base64"))
                    })?;
                    let text = String::from_utf8(bytes).map_err(|_| {
                        S3Error::Config(format!("Secret {name}: data.{k} is not UTF-8 text"))
                    })?;
                    put(&mut s, k, text)?;
                }
            }
            if let Some(data) = v.get("stringData").and_then(|d| d.as_mapping()) {
                for (k, val) in data {
                    if let (Some(k), Some(val)) = (k.as_str(), val.as_str()) {
                        put(&mut s, k, val.to_string())?;
                    }
                }
            }
            out.overlay(s);
            Ok(true)
        }
        "BucketInfo" => {
            let spec = v
                .get("spec")
                .ok_or_else(|| S3Error::Config("BucketInfo has no spec".into()))?;
            let s3 = spec
                .get("secretS3")
                .filter(|s| s.is_mapping())
                .ok_or_else(|| {
                    S3Error::Config(
                        "BucketInfo has no spec.secretS3 (only S3 buckets are supported)".into(),
                    )
                })?;
            let field = |m: &serde_yaml_ng::Value, k: &str| {
                m.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .filter(|x| !x.is_empty())
            };
            // KEY: the keys are in secretS3. Anything else (IAM) means the workload's own
            // identity: the AWS default credential chain.
            let by_key =
                field(spec, "authenticationType").is_none_or(|t| t.eq_ignore_ascii_case("KEY"));
            let bucket = field(spec, "bucketName")
                .ok_or_else(|| S3Error::Config("BucketInfo has no spec.bucketName".into()))?;
            let endpoint = field(s3, "endpoint").ok_or_else(|| {
                S3Error::Config("BucketInfo has no spec.secretS3.endpoint".into())
            })?;
            if by_key {
                if let Some(ak) = field(s3, "accessKeyID") {
                    out.set(AWS_ACCESS_KEY_ID, ak);
                }
                if let Some(sk) = field(s3, "accessSecretKey") {
                    out.set(AWS_SECRET_ACCESS_KEY, sk);
                }
            }
            out.bucket_info = Some(BucketInfo {
                bucket,
                endpoint,
                region: field(s3, "region").filter(|r| !r.is_empty()),
            });
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn put(s: &mut Secrets, key: &str, value: String) -> Result<(), S3Error> {
    if key == "BucketInfo" {
        s.overlay(Secrets::from_bucket_info_text(&value)?);
    } else if FOREIGN.contains(&key) {
        s.foreign_keys.push(key.to_string());
    } else {
        s.set(key, trim_value(key, value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_manifest_with_data_and_string_data() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s3\ndata:\n  AWS_ACCESS_KEY_ID: QUtJQQ==\n  RESTIC_PASSWORD: cHcK\nstringData:\n  AWS_SECRET_ACCESS_KEY: sk\n  CA_CERT_DATA: |\n    -----BEGIN CERTIFICATE-----\n    abc\n    -----END CERTIFICATE-----\n";
        let s = Secrets::from_manifest(yaml).unwrap();
        assert_eq!(s.get(AWS_ACCESS_KEY_ID), Some("AKIA"));
        assert_eq!(s.get(RESTIC_PASSWORD), Some("pw"));
        assert_eq!(s.get(AWS_SECRET_ACCESS_KEY), Some("sk"));
        assert!(s
            .get(CA_CERT_DATA)
            .unwrap()
            .ends_with("-----END CERTIFICATE-----\n"));
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("AKIA") && !dbg.contains("sk\"") && dbg.contains("AWS_ACCESS_KEY_ID")
        );
    }

    #[test]
    fn json_list_and_bucket_info_inside_a_secret() {
        let info = r#"{"apiVersion":"objectstorage.k8s.io/v1alpha1","kind":"BucketInfo","spec":{"bucketName":"bkt-1","secretS3":{"endpoint":"https://minio:9000","region":"eu-1","accessKeyID":"AK","accessSecretKey":"SK"}}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(info);
        let json = format!(
            r#"{{"kind":"List","items":[{{"kind":"Secret","metadata":{{"name":"cosi"}},"data":{{"BucketInfo":"{b64}"}}}}]}}"#
        );
        let s = Secrets::from_manifest(&json).unwrap();
        assert_eq!(s.get(AWS_ACCESS_KEY_ID), Some("AK"));
        assert_eq!(s.get(AWS_SECRET_ACCESS_KEY), Some("SK"));
        let bi = s.bucket_info.unwrap();
        assert_eq!(
            (
                bi.bucket.as_str(),
                bi.endpoint.as_str(),
                bi.region.as_deref()
            ),
            ("bkt-1", "https://minio:9000", Some("eu-1"))
        );
        let direct = Secrets::from_manifest(info).unwrap();
        assert_eq!(direct.bucket_info.unwrap().bucket, "bkt-1");
    }

    #[test]
    fn directory_of_files_and_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(RESTIC_PASSWORD), "pw\n").unwrap();
        std::fs::write(d.path().join(AWS_ACCESS_KEY_ID), "AK").unwrap();
        std::fs::write(d.path().join("MINIO_ACCESS_KEY"), "x").unwrap();
        let s = Secrets::from_path(d.path()).unwrap();
        assert_eq!(s.get(RESTIC_PASSWORD), Some("pw"));
        assert_eq!(s.foreign_keys, vec!["MINIO_ACCESS_KEY".to_string()]);
        assert!(Secrets::from_manifest("kind: ConfigMap\n").is_err());
        assert!(Secrets::from_manifest("kind: Secret\ndata:\n  K: '%%%'\n")
            .unwrap_err()
            .to_string()
            .contains("base64"));
        assert!(Secrets::from_manifest("{{{").is_err());
    }

    /// Hikube's Secret, key `BucketInfo`, exactly as its documentation shows it: no
    /// `apiVersion`, no `kind`, an empty region, `secretAzure: null`.
    const HIKUBE: &str = r#"{"metadata":{"name":"bc-2c7a1a8f-0d25-4a3e-9f0c-2f1b2a1c0de1","creationTimestamp":null},"spec":{"bucketName":"bucket-2c7a1a8f","authenticationType":"KEY","secretS3":{"endpoint":"https://prod.s3.hikube.cloud","region":"","accessKeyID":"AKIAHIKUBE","accessSecretKey":"hikube-secret"},"secretAzure":null,"protocols":["s3"]}}"#;

    #[test]
    fn bucket_info_without_api_version_or_kind_is_recognised_by_its_shape() {
        let check = |s: &Secrets| {
            let info = s.bucket_info.as_ref().expect("bucket info");
            assert_eq!(info.bucket, "bucket-2c7a1a8f");
            assert_eq!(info.endpoint, "https://prod.s3.hikube.cloud");
            assert_eq!(info.region, None, "an empty region is none");
            assert_eq!(s.get(AWS_ACCESS_KEY_ID), Some("AKIAHIKUBE"));
            assert_eq!(s.get(AWS_SECRET_ACCESS_KEY), Some("hikube-secret"));
        };
        // Under a Secret's BucketInfo key, base64 in data and plain in stringData.
        let b64 = base64::engine::general_purpose::STANDARD.encode(HIKUBE);
        let manifest = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bucket-creds\ndata:\n  BucketInfo: {b64}\nstringData:\n  RESTIC_PASSWORD: pw\n"
        );
        let s = Secrets::from_manifest(&manifest).unwrap();
        check(&s);
        assert_eq!(s.get(RESTIC_PASSWORD), Some("pw"));
        check(&Secrets::from_map([("BucketInfo", HIKUBE)]).unwrap());
        // On its own, as a file or mounted key, in JSON or YAML.
        check(&Secrets::from_manifest(HIKUBE).unwrap());
        let yaml = "spec:\n  bucketName: bucket-2c7a1a8f\n  authenticationType: KEY\n  secretS3:\n    endpoint: https://prod.s3.hikube.cloud\n    region: ''\n    accessKeyID: AKIAHIKUBE\n    accessSecretKey: hikube-secret\n  secretAzure: null\n";
        check(&Secrets::from_manifest(yaml).unwrap());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("BucketInfo"), HIKUBE).unwrap();
        check(&Secrets::from_path(dir.path()).unwrap());
    }

    #[test]
    fn bucket_info_with_iam_authentication_leaves_the_keys_to_the_default_chain() {
        let iam = HIKUBE.replace(
            r#""authenticationType":"KEY""#,
            r#""authenticationType":"IAM""#,
        );
        let s = Secrets::from_manifest(&iam).unwrap();
        assert!(s.bucket_info.is_some());
        assert_eq!(s.get(AWS_ACCESS_KEY_ID), None);
        assert_eq!(s.get(AWS_SECRET_ACCESS_KEY), None);
    }

    #[test]
    fn what_is_not_a_bucket_info_is_still_refused_clearly() {
        let e = Secrets::from_map([("BucketInfo", r#"{"spec":{"size":3}}"#)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec.bucketName"), "{e}");
        let azure = r#"{"spec":{"bucketName":"b","authenticationType":"KEY","secretS3":null,"secretAzure":{"accessToken":"x"},"protocols":["azure"]}}"#;
        let e = Secrets::from_manifest(azure).unwrap_err().to_string();
        assert!(e.contains("only S3"), "{e}");
        let e = Secrets::from_manifest(r#"{"apiVersion":"v1","kind":"ConfigMap","data":{}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no Secret"), "{e}");
    }
}
