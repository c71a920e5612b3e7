//! Stash-style `Repository` manifests (`stash.appscode.com/v1alpha1`) and the Secret they name.
//!
//! ```yaml
//! apiVersion: stash.appscode.com/v1alpha1
//! kind: Repository
//! metadata: {name: app-backup, namespace: demo}
//! spec:
//!   backend:
//!     s3: {endpoint: minio.storage:9000, bucket: backups, prefix: demo/app, region: us-east-1}
//!     storageSecretName: minio-creds
//! ```
//! A file may hold several documents or a `kind: List` (as `kubectl get -o yaml` prints), so
//! the Repository and its Secret can travel together.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::S3Error;
use crate::location::S3Location;
use crate::secrets::Secrets;

/// A Stash `Repository` object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepositoryManifest {
    /// `stash.appscode.com/v1alpha1` (not checked).
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// `Repository`.
    pub kind: String,
    /// Name and namespace.
    #[serde(default)]
    pub metadata: Metadata,
    /// Where the repository lives.
    pub spec: RepositorySpec,
}

/// The object's name and namespace.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A Repository's `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RepositorySpec {
    /// The storage backend.
    pub backend: Backend,
}

/// `spec.backend`: one storage kind and the Secret with its credentials.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Backend {
    /// An S3 bucket.
    #[serde(default)]
    pub s3: Option<S3Spec>,
    /// A mounted volume.
    #[serde(default)]
    pub local: Option<LocalSpec>,
    /// The Secret holding `RESTIC_PASSWORD` and the storage credentials.
    #[serde(rename = "storageSecretName", default)]
    pub storage_secret_name: Option<String>,
    /// Any other backend (gcs, azure, swift, b2, rest, …), kept to name it in the error.
    #[serde(flatten)]
    other: BTreeMap<String, serde::de::IgnoredAny>,
}

/// `spec.backend.s3`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct S3Spec {
    /// Host and port, with or without a scheme (none means https).
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region.
    #[serde(default)]
    pub region: Option<String>,
}

/// `spec.backend.local`: a volume mounted into the pod.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LocalSpec {
    /// Where the volume is mounted.
    #[serde(rename = "mountPath")]
    pub mount_path: String,
    /// A directory inside it.
    #[serde(rename = "subPath", default)]
    pub sub_path: Option<String>,
}

/// Where a Repository points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An S3 bucket.
    S3 {
        /// Endpoint, bucket and prefix.
        location: S3Location,
        /// The region (us-east-1 when the manifest names none).
        region: String,
    },
    /// A directory.
    Local(PathBuf),
}

/// Backends this build can use.
pub const SUPPORTED: &str = "s3, local";

impl RepositoryManifest {
    /// `metadata.name`, or `<unnamed>`.
    pub fn name(&self) -> &str {
        if self.metadata.name.is_empty() {
            "<unnamed>"
        } else {
            &self.metadata.name
        }
    }

    /// The region the manifest names, if it names one (an empty `region` names none).
    pub fn explicit_region(&self) -> Option<String> {
        self.spec
            .backend
            .s3
            .as_ref()
            .and_then(|s| s.region.clone())
            .filter(|r| !r.is_empty())
    }

    /// The storage the Repository describes; endpoints without a scheme are https and the
    /// region defaults to us-east-1.
    pub fn target(&self) -> Result<Target, S3Error> {
        let b = &self.spec.backend;
        match (&b.s3, &b.local) {
            (Some(s3), None) => Ok(Target::S3 {
                location: S3Location::from_parts(&s3.endpoint, &s3.bucket, &s3.prefix)?,
                region: s3
                    .region
                    .clone()
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| crate::DEFAULT_REGION.to_string()),
            }),
            (None, Some(l)) => {
                let mut p = PathBuf::from(&l.mount_path);
                if let Some(sub) = l.sub_path.as_deref().filter(|s| !s.is_empty()) {
                    p.push(sub);
                }
                Ok(Target::Local(p))
            }
            (Some(_), Some(_)) => Err(S3Error::Config(format!(
                "Repository {} names both an s3 and a local backend; keep one",
                self.name()
            ))),
            (None, None) => {
                let kinds: Vec<&str> = b.other.keys().map(String::as_str).collect();
                Err(S3Error::Config(if kinds.is_empty() {
                    format!(
                        "Repository {} has no spec.backend (supported: {SUPPORTED})",
                        self.name()
                    )
                } else {
                    format!("Repository {} uses the {} backend, which hoard does not support (supported: {SUPPORTED})", self.name(), kinds.join(", "))
                }))
            }
        }
    }
}

/// What a `--crd` file holds: the Repository, and the Secrets that came with it by name.
#[derive(Debug, Clone)]
pub struct CrdFile {
    /// The Repository.
    pub repository: RepositoryManifest,
    /// Secrets that came in the same file, by name.
    pub secrets: Vec<(String, Secrets)>,
}

/// Reads a Repository (and any Secrets) from YAML or JSON text.
pub fn parse_crd(text: &str) -> Result<CrdFile, S3Error> {
    let mut repos = Vec::new();
    let mut secrets = Vec::new();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| S3Error::parse("not valid YAML or JSON", e))?;
        flatten_list(v, &mut docs);
    }
    for v in docs {
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("Repository") => repos.push(
                serde_yaml_ng::from_value::<RepositoryManifest>(v)
                    .map_err(|e| S3Error::parse("invalid Repository", e))?,
            ),
            Some("Secret") => {
                let name = v
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string();
                let text = serde_yaml_ng::to_string(&v).map_err(|e| S3Error::parse("Secret", e))?;
                secrets.push((name, Secrets::from_manifest(&text)?));
            }
            _ => {}
        }
    }
    match repos.len() {
        0 => Err(S3Error::Config("no kind: Repository document found".into())),
        1 => Ok(CrdFile {
            repository: repos.remove(0),
            secrets,
        }),
        n => Err(S3Error::Config(format!(
            "{n} Repository documents found; give one"
        ))),
    }
}

fn flatten_list(v: serde_yaml_ng::Value, out: &mut Vec<serde_yaml_ng::Value>) {
    if v.get("kind").and_then(|k| k.as_str()) == Some("List") {
        if let Some(items) = v.get("items").and_then(|i| i.as_sequence()) {
            for i in items.clone() {
                flatten_list(i, out);
            }
        }
    } else {
        out.push(v);
    }
}

/// Picks the Secret the Repository names. `named` are Secrets that carry a name (manifests);
/// `unnamed` is a mounted directory or the environment, which cannot be checked by name.
pub fn select_secret(
    repo: &RepositoryManifest,
    named: &[(String, Secrets)],
) -> Result<Option<Secrets>, S3Error> {
    let want = repo
        .spec
        .backend
        .storage_secret_name
        .as_deref()
        .filter(|n| !n.is_empty());
    match (want, named) {
        (_, []) => Ok(None),
        (None, [(_, s)]) => Ok(Some(s.clone())),
        (None, _) => Err(S3Error::Config(format!(
            "Repository {} has no spec.backend.storageSecretName, and several Secrets were given",
            repo.name()
        ))),
        (Some(w), _) => match named.iter().find(|(n, _)| n == w) {
            Some((_, s)) => Ok(Some(s.clone())),
            None => {
                let got: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
                Err(S3Error::Config(format!(
                    "Repository {} needs Secret {w:?} (spec.backend.storageSecretName), but the Secret given is named {}",
                    repo.name(),
                    got.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ")
                )))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "apiVersion: stash.appscode.com/v1alpha1\nkind: Repository\nmetadata:\n  name: app\nspec:\n  backend:\n    s3:\n      endpoint: minio.storage:9000\n      bucket: backups\n      prefix: /demo/app/\n    storageSecretName: creds\n";

    #[test]
    fn s3_repository_defaults() {
        let f = parse_crd(REPO).unwrap();
        let Target::S3 { location, region } = f.repository.target().unwrap() else {
            panic!()
        };
        assert_eq!(
            location.to_string(),
            "s3:https://minio.storage:9000/backups/demo/app"
        );
        assert_eq!(region, "us-east-1");
    }

    #[test]
    fn list_with_secret_and_name_check() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"stash.appscode.com/v1alpha1","kind":"Repository","metadata":{"name":"r"},
             "spec":{"backend":{"local":{"mountPath":"/backup","subPath":"x"},"storageSecretName":"creds"}}},
            {"apiVersion":"v1","kind":"Secret","metadata":{"name":"creds"},"stringData":{"RESTIC_PASSWORD":"pw"}}]}"#;
        let f = parse_crd(json).unwrap();
        assert_eq!(
            f.repository.target().unwrap(),
            Target::Local("/backup/x".into())
        );
        let s = select_secret(&f.repository, &f.secrets).unwrap().unwrap();
        assert_eq!(s.get("RESTIC_PASSWORD"), Some("pw"));
        let wrong = vec![("other".to_string(), Secrets::default())];
        let e = select_secret(&f.repository, &wrong)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"creds\"") && e.contains("\"other\""), "{e}");
    }

    #[test]
    fn unknown_backend_names_supported_kinds() {
        let y = "kind: Repository\nmetadata: {name: g}\nspec:\n  backend:\n    gcs: {bucket: b}\n    storageSecretName: s\n";
        let e = parse_crd(y)
            .unwrap()
            .repository
            .target()
            .unwrap_err()
            .to_string();
        assert!(e.contains("gcs") && e.contains("s3, local"), "{e}");
        assert!(parse_crd("kind: Secret\n").is_err());
    }
}
