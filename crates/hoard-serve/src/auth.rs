//! Access: with a token, every request but the login page must carry it, as
//! `Authorization: Bearer <token>` or as the session cookie the login page sets. The cookie
//! holds a keyed hash of the token, not the token, and comparisons are constant-time (BLAKE3
//! hashes compare in constant time).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::html::{page, query_text};
use crate::AppState;

pub const COOKIE: &str = "hoard_session";

/// What the session cookie holds for `token`.
pub fn session_value(token: &str) -> String {
    blake3::derive_key("hoard serve session v1", token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// Whether the request carries the token (or the session made from it).
pub fn allowed(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim(), token));
    if bearer {
        return true;
    }
    let session = session_value(token);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == COOKIE && same(v, &session))
}

/// Refuses what another web site can make a browser send: a form posted from another
/// origin (cross-site request forgery: a page elsewhere could otherwise start a restore
/// through a logged-in or token-less console), and, without a token, any request whose
/// `Host` is not a loopback name (a DNS-rebinding page would otherwise read the console).
fn foreign(req: &Request, guarded: bool) -> Option<&'static str> {
    let h = req.headers();
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !guarded && !is_loopback_host(host) {
        return Some("without an access token the console answers only to a loopback host name (127.0.0.1, localhost, [::1])");
    }
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let cross_site = h
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    let other_origin = h
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                != Some(host)
        });
    (cross_site || other_origin).then_some("a form from another site cannot act on this console")
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    matches!(name, "localhost" | "[::1]")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Lets a request through when no token is set, when it carries the token, or when it is
/// for the login page; sends browsers to the login page and other clients a 401.
pub async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(why) = foreign(&req, st.token.is_some()) {
        return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
    }
    let Some(token) = st.token.as_deref() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/login" || allowed(req.headers(), token) {
        return next.run(req).await;
    }
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if req.method() == Method::GET && wants_html {
        return Redirect::to("/login").into_response();
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a token is required: Authorization: Bearer <token>, or log in at /login\n",
    )
        .into_response()
}

/// The login page: one field for the token.
pub async fn login_form() -> Html<String> {
    Html(page("Log in", LOGIN))
}

const LOGIN: &str = "<form method=post action='/login'><p>Access token: <input type=password name=token id=token autofocus> <button id=login>Log in</button></p></form>";

/// Sets the session cookie when the token is right.
pub async fn login(State(st): State<AppState>, body: String) -> Response {
    let given = query_text(Some(&body), "token").unwrap_or_default();
    match st.token.as_deref() {
        Some(token) if allowed(&bearer(given.trim()), token) => {
            let cookie = format!(
                "{}={}; Path=/; HttpOnly; SameSite=Strict",
                COOKIE,
                session_value(token)
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Log in",
                &format!("<p class=err>Wrong token.</p>{LOGIN}"),
            )),
        )
            .into_response(),
        None => Redirect::to("/").into_response(),
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_names() {
        for h in [
            "127.0.0.1:8080",
            "localhost:1",
            "[::1]:80",
            "127.0.0.1",
            "localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1:80",
            "localhost.evil.example",
            "",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn bearer_and_cookie() {
        let t = "s3cret-token";
        let mut h = HeaderMap::new();
        assert!(!allowed(&h, t));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token".parse().unwrap(),
        );
        assert!(allowed(&h, t));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(!allowed(&h, t));
        let mut h = HeaderMap::new();
        let c = format!("other=1; {COOKIE}={}", session_value(t));
        h.insert(header::COOKIE, c.parse().unwrap());
        assert!(allowed(&h, t));
        // The token itself is not a session.
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("{COOKIE}={t}").parse().unwrap());
        assert!(!allowed(&h, t));
        assert!(!session_value(t).contains(t));
    }
}
