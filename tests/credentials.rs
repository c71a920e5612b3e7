//! Every source of the AWS default credential chain that can run on loopback, each alone:
//! the S3 test server accepts a request only when it is signed with the keys that source
//! hands out (temporary keys also need their session token), and nothing else offers keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

#[macro_use]
mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use hoard_testkit::{
    HttpStub, S3Server, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, TEMPORARY_ACCESS_KEY,
    TEMPORARY_SECRET_KEY,
};

/// hoard with no keys anywhere: no AWS_* variables, no home directory, no instance metadata.
fn keyless(server: &S3Server, bucket: &str) -> Command {
    let mut c = bare();
    c.env("RESTIC_PASSWORD", "pw")
        .arg("-r")
        .arg(format!("s3:{}/{bucket}/repo", server.endpoint));
    c
}

/// init, then a backup, with the chain configured by `setup`.
fn init_and_backup(server: &S3Server, bucket: &str, dir: &Path, setup: impl Fn(&mut Command)) {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"signed by the chain").unwrap();
    let run = |args: &[&str]| -> Output {
        let mut c = keyless(server, bucket);
        setup(&mut c);
        c.args(args).output().unwrap()
    };
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    assert_ok(&run(&init));
    assert_ok(&run(&["backup", "-q", src.to_str().unwrap()]));
    assert!(!server.object_keys(bucket).is_empty());
}

/// An RFC 3339 time `secs` from now, as credential endpoints write expirations.
fn expiration(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn environment_keys() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    init_and_backup(&server, "env-bucket", dir.path(), |c| {
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    });
    // A session token in the environment goes along with its keys.
    init_and_backup(&server, "env-temporary", dir.path(), |c| {
        c.env("AWS_ACCESS_KEY_ID", TEMPORARY_ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", TEMPORARY_SECRET_KEY)
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
    });
}

#[test]
fn shared_credentials_and_config_files_with_profiles() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    fs::write(
        &credentials,
        format!("[default]\naws_access_key_id = NOTTHEKEY\naws_secret_access_key = wrong\n\n[backup]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    // AWS_PROFILE picks the right section of AWS_SHARED_CREDENTIALS_FILE...
    init_and_backup(&server, "profile-bucket", dir.path(), |c| {
        c.env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_PROFILE", "backup");
    });
    // ...and without it the default section is used, and refused.
    let out = keyless(&server, "profile-bucket")
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("NotSignedUp") && e.contains("default credential chain"),
        "{e}"
    );
    assert!(!e.contains("wrong"), "{e}");

    // Keys in a profile of AWS_CONFIG_FILE, with temporary credentials.
    let config = dir.path().join("config");
    fs::write(
        &config,
        format!("[profile temp]\naws_access_key_id = {TEMPORARY_ACCESS_KEY}\naws_secret_access_key = {TEMPORARY_SECRET_KEY}\naws_session_token = {SESSION_TOKEN}\n"),
    )
    .unwrap();
    init_and_backup(&server, "config-bucket", dir.path(), |c| {
        c.env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .env("AWS_PROFILE", "temp");
    });
}

#[test]
fn credential_process() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("creds.sh");
    fs::write(
        &script,
        format!("#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{TEMPORARY_ACCESS_KEY}\", \"SecretAccessKey\": \"{TEMPORARY_SECRET_KEY}\", \"SessionToken\": \"{SESSION_TOKEN}\", \"Expiration\": \"{}\"}}'\n", expiration(3600)),
    )
    .unwrap();
    let config = dir.path().join("config");
    fs::write(
        &config,
        format!(
            "[profile tool]\ncredential_process = sh {}\n",
            script.display()
        ),
    )
    .unwrap();
    init_and_backup(&server, "process-bucket", dir.path(), |c| {
        c.env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .env("AWS_PROFILE", "tool");
    });
}

/// A container-credentials endpoint (ECS, EKS Pod Identity) that wants `token`.
fn container_endpoint(
    token: &'static str,
    keys: (&'static str, &'static str, &'static str),
    expires_in: i64,
) -> (HttpStub, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let stub = HttpStub::start(move |req| {
        if req.header("authorization") != Some(token) {
            return (401, "{\"message\": \"missing or wrong authorization token\"}".into());
        }
        counted.fetch_add(1, Ordering::SeqCst);
        (
            200,
            format!(
                "{{\"AccessKeyId\": \"{}\", \"SecretAccessKey\": \"{}\", \"Token\": \"{}\", \"Expiration\": \"{}\"}}",
                keys.0,
                keys.1,
                keys.2,
                expiration(expires_in)
            ),
        )
    })
    .unwrap();
    (stub, calls)
}

#[test]
fn container_credentials_with_an_authorization_token_or_token_file() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let temporary = (TEMPORARY_ACCESS_KEY, TEMPORARY_SECRET_KEY, SESSION_TOKEN);
    let (stub, calls) = container_endpoint("pod-identity-token", temporary, 3600);
    let uri = format!("{}/v1/credentials", stub.url);
    init_and_backup(&server, "ecs-bucket", dir.path(), |c| {
        c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token");
    });
    assert!(calls.load(Ordering::SeqCst) >= 1);
    assert!(stub.requests().iter().all(|r| r.path == "/v1/credentials"));

    // EKS Pod Identity's form: the token in a file.
    let token_file = dir.path().join("eks-pod-identity-token");
    fs::write(&token_file, "pod-identity-token\n").unwrap();
    init_and_backup(&server, "ecs-file-bucket", dir.path(), |c| {
        c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file);
    });
}

#[test]
fn an_empty_session_token_is_never_sent() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Long-term keys with `"Token": ""`, as some endpoints answer.
    let (stub, _) = container_endpoint("t", (ACCESS_KEY, SECRET_KEY, ""), 3600);
    init_and_backup(&server, "empty-token", dir.path(), |c| {
        c.env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/creds", stub.url),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t");
    });
    // And an empty AWS_SESSION_TOKEN beside static keys is no token either.
    init_and_backup(&server, "empty-env-token", dir.path(), |c| {
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_SESSION_TOKEN", "");
    });
}

#[test]
fn expiring_credentials_are_fetched_again_during_a_run() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Credentials that expire within the two minutes in which they count as stale: every
    // signing must fetch fresh ones rather than use what it has.
    let temporary = (TEMPORARY_ACCESS_KEY, TEMPORARY_SECRET_KEY, SESSION_TOKEN);
    let (stub, calls) = container_endpoint("t", temporary, 60);
    init_and_backup(&server, "refresh-bucket", dir.path(), |c| {
        c.env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("{}/creds", stub.url),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t");
    });
    let n = calls.load(Ordering::SeqCst);
    assert!(n >= 4, "fetched {n} times over init and a backup");
}

#[test]
fn web_identity_through_sts_at_aws_endpoint_url_sts() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("irsa-token");
    fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.service-account.sig\n").unwrap();
    let sts = HttpStub::start(|req| {
        let form = &req.body;
        let ok = req.method == "POST"
            && form.contains("Action=AssumeRoleWithWebIdentity")
            && form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fbackup")
            && form.contains("WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.service-account.sig");
        if !ok {
            return (400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad request</Message></Error></ErrorResponse>".into());
        }
        (
            200,
            format!(
                "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>{TEMPORARY_ACCESS_KEY}</AccessKeyId><SecretAccessKey>{TEMPORARY_SECRET_KEY}</SecretAccessKey><SessionToken>{SESSION_TOKEN}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
                expiration(3600)
            ),
        )
    })
    .unwrap();
    init_and_backup(&server, "irsa-bucket", dir.path(), |c| {
        c.env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/backup")
            .env("AWS_ENDPOINT_URL_STS", &sts.url);
    });
    assert!(!sts.requests().is_empty());

    // STS refusing the token: its reason reaches the user.
    let out = keyless(&server, "irsa-bucket")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/other")
        .env("AWS_ENDPOINT_URL_STS", &sts.url)
        .arg("snapshots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("InvalidIdentityToken"), "{e}");
}

#[test]
fn a_share_link_cannot_outlive_temporary_credentials() {
    let server = S3Server::http().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let temporary = (TEMPORARY_ACCESS_KEY, TEMPORARY_SECRET_KEY, SESSION_TOKEN);
    // Credentials that live one more hour.
    let (stub, _) = container_endpoint("t", temporary, 3600);
    let uri = format!("{}/creds", stub.url);
    let setup = |c: &mut Command| {
        c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
            .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t");
    };
    init_and_backup(&server, "share-bucket", dir.path(), setup);
    let file = dir.path().join("src/f.txt");
    let run = |expires: &str| {
        let mut c = keyless(&server, "share-bucket");
        setup(&mut c);
        c.args([
            "share",
            "latest",
            file.to_str().unwrap(),
            "--expires",
            expires,
        ])
        .output()
        .unwrap()
    };
    // A link for two hours would stop working after one: refused before anything is stored.
    let out = run("2h");
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("cannot sign a URL valid for 7200s"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(server
        .object_keys("share-bucket")
        .iter()
        .all(|k| !k.contains("/shares/")));
    // Ten minutes is fine; the link carries the session token and works without keys.
    let out = run("10m");
    assert_ok(&out);
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(url.contains("X-Amz-Security-Token="), "{url}");
    let (status, body) = http_get(&url);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"signed by the chain");
}

#[test]
fn empty_keys_are_named_not_handed_to_the_default_chain() {
    let server = S3Server::http().unwrap();
    for (ak, sk) in [("", ""), ("", SECRET_KEY)] {
        let out = keyless(&server, "empty")
            .env("AWS_ACCESS_KEY_ID", ak)
            .env("AWS_SECRET_ACCESS_KEY", sk)
            .arg("init")
            .args(CHEAP_KDF)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0));
        let e = stderr(&out);
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        assert!(!e.contains("expires"), "{e}");
    }
}
