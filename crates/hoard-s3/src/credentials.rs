//! Where S3 credentials come from: one provider chain per connection, shared by the bucket
//! check and by OpenDAL, so both sign with the same keys and refresh them the same way.
//!
//! Static keys (from a Secret or the environment) when given, else the AWS default chain in
//! the AWS SDKs' order: environment, shared config and credentials files (profiles), SSO,
//! web identity, `credential_process`, container credentials, instance metadata. reqsign
//! implements each source and refreshes expiring credentials two minutes early; hoard adds
//! two things:
//! - web identity that honours `AWS_ENDPOINT_URL_STS` (and `AWS_ENDPOINT_URL`), as the AWS
//!   SDKs do, so a private or regional STS endpoint works;
//! - no empty session token is ever sent: a source that hands out `""` (some container
//!   credential endpoints do for long-term keys) gets no `x-amz-security-token` header, which
//!   servers would reject.

use bytes::Bytes;
use reqsign_aws_v4::{
    Credential, ECSCredentialProvider, EnvCredentialProvider, IMDSv2CredentialProvider,
    ProcessCredentialProvider, ProfileCredentialProvider, SSOCredentialProvider,
    StaticCredentialProvider,
};
use reqsign_core::{
    Context, ProvideCredential, ProvideCredentialChain, ProvideCredentialDyn, Result,
};

use crate::error::key_holder;
use crate::secrets::SecretString;

/// Static keys, or the AWS default chain (env, profile, web identity, ECS, IMDS).
#[derive(Clone)]
pub enum Credentials {
    /// Keys given explicitly (from a Secret or the environment).
    Static {
        /// The access key id (shown in messages).
        access_key_id: String,
        /// The secret key (never shown).
        secret_access_key: SecretString,
        /// A session token for temporary credentials.
        session_token: Option<SecretString>,
    },
    /// Whatever the AWS default chain finds.
    DefaultChain,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Static { access_key_id, .. } => write!(f, "Static({access_key_id})"),
            Credentials::DefaultChain => f.write_str("DefaultChain"),
        }
    }
}

impl Credentials {
    /// The access key id, or empty for the default chain (for messages).
    pub fn access_key_id(&self) -> &str {
        match self {
            Credentials::Static { access_key_id, .. } => access_key_id,
            Credentials::DefaultChain => "",
        }
    }

    /// Who a refusal was for, as messages name it: `access key id "AKIA…"`, or the keys the
    /// AWS default chain found.
    pub fn holder(&self) -> String {
        key_holder(self.access_key_id())
    }
}

/// The credentials source for these settings; `client` fetches from STS (it trusts the
/// configured CAs). When no source gives credentials, its error says why.
pub(crate) fn provider(creds: &Credentials, client: &reqwest::Client) -> Provider {
    let sources: Vec<Source> = match creds {
        Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let mut p = StaticCredentialProvider::new(access_key_id, secret_access_key.expose());
            if let Some(t) = session_token.as_ref().filter(|t| !t.expose().is_empty()) {
                p = p.with_session_token(t.expose());
            }
            vec![Box::new(p)]
        }
        Credentials::DefaultChain => vec![
            Box::new(EnvCredentialProvider::new()),
            Box::new(ProfileCredentialProvider::new()),
            Box::new(SSOCredentialProvider::new()),
            Box::new(WebIdentity {
                client: client.clone(),
            }),
            Box::new(ProcessCredentialProvider::new()),
            Box::new(ECSCredentialProvider::new()),
            Box::new(IMDSv2CredentialProvider::new()),
        ],
    };
    Provider(sources)
}

/// The same, as the chain type OpenDAL takes (which turns a failure into "no credentials";
/// the bucket check, which signs first, has already said why).
pub(crate) fn chain(
    creds: &Credentials,
    client: &reqwest::Client,
) -> ProvideCredentialChain<Credential> {
    ProvideCredentialChain::new().push(provider(creds, client))
}

type Source = Box<dyn ProvideCredentialDyn<Credential = Credential>>;

/// Credential sources, first with credentials wins. Unlike reqsign's chain, which only logs a
/// failing source and goes on, it says why no source gave credentials (a refused
/// web-identity token, an unreachable container endpoint), and it never hands out an empty
/// session token.
#[derive(Debug)]
pub(crate) struct Provider(Vec<Source>);

impl ProvideCredential for Provider {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> Result<Option<Credential>> {
        // credential_process needs to run commands; the contexts we are given cannot.
        let ctx = ctx.clone().with_command_execute(Commands);
        let mut failures = Vec::new();
        for source in &self.0 {
            match source.provide_credential_dyn(&ctx).await {
                Ok(Some(mut c)) => {
                    if c.session_token.as_deref().is_some_and(str::is_empty) {
                        c.session_token = None;
                    }
                    return Ok(Some(c));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("credential source {source:?} failed: {e}");
                    failures.push(crate::tls::error_chain(&e));
                }
            }
        }
        Err(reqsign_core::Error::credential_invalid(
            if failures.is_empty() {
                "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a source of the AWS default chain (profile, web identity, credential_process, container or instance credentials)".to_string()
            } else {
                format!(
                    "no source of the AWS default credential chain gave credentials: {}",
                    failures.join("; ")
                )
            },
        ))
    }
}

/// Runs a profile's `credential_process` (on a blocking thread; given up after a minute).
#[derive(Debug)]
struct Commands;

/// How long a `credential_process` may take.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl reqsign_core::CommandExecute for Commands {
    async fn command_execute(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<reqsign_core::CommandOutput> {
        let mut cmd = std::process::Command::new(program);
        cmd.args(args).stdin(std::process::Stdio::null());
        let what = format!("credential_process {program}");
        let run = tokio::task::spawn_blocking(move || cmd.output());
        let out = tokio::time::timeout(COMMAND_TIMEOUT, run)
            .await
            .map_err(|_| {
                reqsign_core::Error::unexpected(format!("{what} did not finish within a minute"))
            })?
            .map_err(|e| reqsign_core::Error::unexpected(format!("{what} failed")).with_source(e))?
            .map_err(|e| {
                reqsign_core::Error::unexpected(format!("{what} cannot run")).with_source(e)
            })?;
        Ok(reqsign_core::CommandOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// AssumeRoleWithWebIdentity (EKS IRSA): `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`,
/// at `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the regional endpoint of `AWS_REGION`, or the
/// global one.
#[derive(Debug)]
struct WebIdentity {
    client: reqwest::Client,
}

impl ProvideCredential for WebIdentity {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> Result<Option<Credential>> {
        let (Some(token_file), Some(role_arn)) = (
            ctx.env_var("AWS_WEB_IDENTITY_TOKEN_FILE")
                .filter(|v| !v.is_empty()),
            ctx.env_var("AWS_ROLE_ARN").filter(|v| !v.is_empty()),
        ) else {
            return Ok(None);
        };
        let token = ctx
            .file_read_as_string(&token_file)
            .await
            .map_err(|e| e.with_context(format!("AWS_WEB_IDENTITY_TOKEN_FILE {token_file}")))?;
        let endpoint = ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|k| ctx.env_var(k).filter(|v| !v.is_empty()))
            .unwrap_or_else(
                || match ctx.env_var("AWS_REGION").filter(|r| !r.is_empty()) {
                    Some(r) => format!("https://sts.{r}.amazonaws.com"),
                    None => "https://sts.amazonaws.com".to_string(),
                },
            );
        let session = ctx
            .env_var("AWS_ROLE_SESSION_NAME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "hoard".to_string());
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn.as_str()),
            ("RoleSessionName", session.as_str()),
            ("WebIdentityToken", token.trim()),
        ];
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let what = format!("AssumeRoleWithWebIdentity at {endpoint}");
        let resp = self
            .client
            .post(format!("{}/", endpoint.trim_end_matches('/')))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .send()
            .await
            .map_err(|e| {
                reqsign_core::Error::unexpected(format!("{what} failed")).with_source(e)
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            reqsign_core::Error::unexpected(format!("{what}: unreadable answer")).with_source(e)
        })?;
        if !status.is_success() {
            let code = xml_field(&text, "Code").unwrap_or_default();
            let message = xml_field(&text, "Message").unwrap_or_default();
            return Err(reqsign_core::Error::permission_denied(format!(
                "{what} refused: HTTP {} {code}: {message}",
                status.as_u16()
            )));
        }
        let field = |tag: &str| {
            xml_field(&text, tag).ok_or_else(|| {
                reqsign_core::Error::unexpected(format!("{what}: the answer has no {tag}"))
            })
        };
        Ok(Some(Credential {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
            session_token: Some(field("SessionToken")?).filter(|t| !t.is_empty()),
            expires_in: match xml_field(&text, "Expiration") {
                Some(t) => Some(t.parse().map_err(|e| {
                    reqsign_core::Error::unexpected(format!("{what}: bad Expiration {t:?}"))
                        .with_source(e)
                })?),
                None => None,
            },
        }))
    }
}

/// Percent-encoding of everything but RFC 3986's unreserved characters (form values, query
/// parameters).
pub(crate) fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of the first `<tag>` element (STS and S3 answers are small, flat documents).
pub(crate) fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}
