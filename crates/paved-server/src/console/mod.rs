//! The web console: server-rendered HTML (askama templates, escaped by
//! default) over the same operations and access checks as the API. Pages
//! read without JavaScript; an apply's progress page adds a small script that
//! follows the operation's Server-Sent Events, and refreshes itself without it.
//!
//! Signing in stores the API token in an HttpOnly, SameSite=Strict cookie;
//! forms that change something also check the `Origin` header.

mod pages;
mod policies;

use crate::AppState;
use crate::auth::{Authed, COOKIE};
use crate::error::ApiError;
use askama::Template;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use pages::*;

/// A signed-in console user; requests without a usable token are sent to the sign-in page.
pub struct User(pub Authed);

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<User, Response> {
        match Authed::from_request_parts(parts, state).await {
            Ok(a) => Ok(User(a)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                let next = parts.uri.path_and_query().map_or("/console", |p| p.as_str());
                let to = format!("/console/login?next={}", encode(next));
                Err(Redirect::to(&to).into_response())
            }
            Err(e) => Err(page_error(None, e)),
        }
    }
}

impl OptionalFromRequestParts<AppState> for User {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<User>, Self::Rejection> {
        Ok(Authed::from_request_parts(parts, state).await.ok().map(User))
    }
}

/// A console path for a `next=` query value: unreserved characters and `/` stay as they are.
const NEXT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, NEXT).to_string()
}

/// Renders a template, or a plain 500 naming the failure.
pub fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot render page: {e}")).into_response(),
    }
}

/// An API error as a page with the same status and message (a 403 names what would allow it).
pub fn page_error(subject: Option<String>, e: ApiError) -> Response {
    let title = match e.status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        s if s.is_client_error() => "Cannot do that",
        _ => "Something went wrong",
    };
    let mut details = e.body.message.clone();
    for d in &e.body.details {
        details.push_str(&format!(" — {}: {}", d.path.as_deref().unwrap_or(""), d.message));
    }
    let mut response = render(&ErrorPage { subject, title: title.into(), message: details });
    *response.status_mut() = e.status;
    response
}

/// Refuses a state-changing form posted from another site (defence in depth
/// beside the SameSite=Strict cookie).
pub fn same_origin(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or_default();
    let host = host.to_str().unwrap_or_default();
    if origin.split("://").nth(1) == Some(host) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("a form from {origin} cannot act on this console")))
    }
}

/// The cookie that signs a browser in (or out, with an empty value); `Secure`
/// when the browser came over https (see [`over_https`]).
pub fn cookie(token: &str, max_age: Option<u32>, secure: bool) -> String {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}{age}")
}

/// Whether the browser reached the console over https: paved serves plain
/// HTTP behind a TLS-terminating proxy, which says so in
/// `X-Forwarded-Proto` or `Forwarded: proto=https` (RFC 7239). A client
/// faking it only makes its own cookie stricter.
pub fn over_https(headers: &axum::http::HeaderMap) -> bool {
    let value = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    value("x-forwarded-proto").split(',').next().is_some_and(|p| p.trim() == "https")
        || value("forwarded").split([';', ',']).any(|p| p.trim() == "proto=https")
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pages::login_page, pages::login))
        .routes(routes!(pages::logout))
        .routes(routes!(pages::matrix))
        .routes(routes!(pages::environment))
        .routes(routes!(pages::apply))
        .routes(routes!(pages::destroy))
        .routes(routes!(pages::service))
        .routes(routes!(pages::audit))
        .routes(routes!(policies::policies))
        .routes(routes!(pages::operation))
}

#[cfg(test)]
mod cookie_tests {
    use super::{cookie, over_https};
    use axum::http::HeaderMap;

    #[test]
    fn the_cookie_is_secure_behind_https() {
        let mut h = HeaderMap::new();
        assert!(!over_https(&h));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(over_https(&h));
        let mut f = HeaderMap::new();
        f.insert("forwarded", "for=10.0.0.1;proto=https;host=paved.example.com".parse().unwrap());
        assert!(over_https(&f));
        assert!(cookie("t", None, true).contains("; Secure"));
        assert!(!cookie("t", None, false).contains("Secure"));
        assert!(cookie("t", None, true).contains("HttpOnly; SameSite=Strict"));
    }
}
