//! The web UI: server-rendered pages (askama templates in `templates/`), a little JavaScript
//! for the live parts (`static/app.js`: a running job's log over SSE, pipeline state), no
//! front-end build. Signing in takes an API token and sets a session cookie (HttpOnly,
//! SameSite=Strict); every page but the sign-in page needs one, and every form carries the
//! session's CSRF token. The pages read the store directly and act through the same functions
//! as the API.

pub(crate) mod html;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use salve_store::SessionRow;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::auth;
use crate::server::Server;

pub const COOKIE: &str = "salve_session";
const SESSION_DAYS: i64 = 7;

pub fn router(server: Arc<Server>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::projects))
        .route("/projects/{name}", get(pages::project))
        .route("/projects/{name}/pulls", get(pages::pulls))
        .route("/projects/{name}/pulls/{number}", get(pages::pull))
        .route("/projects/{name}/pulls/{number}/{action}", post(pages::pull_action))
        .route("/pipelines/{id}", get(pages::pipeline))
        .route("/pipelines/{id}/promote", post(pages::promote))
        .route("/tasks/{id}/run", post(pages::run_task))
        .route("/jobs/{id}", get(pages::job))
        .route("/jobs/{id}/raw", get(pages::raw_log))
        .route("/jobs/{id}/artifacts/{*path}", get(pages::artifact))
        .route("/heals/{id}", get(pages::heal))
        .route("/agents", get(pages::agents))
        .route("/logout", post(logout))
        .route_layer(axum::middleware::from_fn_with_state(server.clone(), require_session));
    Router::new()
        .route("/login", get(login_page).post(login))
        .route(
            "/static/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], include_str!("../../static/app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], include_str!("../../static/app.js")) }),
        )
        .merge(pages)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(server)
}

/// The session cookie's value in a request.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty() && v.len() <= 200).then(|| v.to_owned())
    })
}

/// The request's live session.
pub async fn session(server: &Server, headers: &HeaderMap) -> Option<SessionRow> {
    let id = cookie(headers)?;
    server.store.session(&auth::hash(&id)).await.ok().flatten()
}

async fn require_session(State(server): State<Arc<Server>>, mut request: Request, next: Next) -> Response {
    match session(&server, request.headers()).await {
        Some(s) => {
            request.extensions_mut().insert(s);
            next.run(request).await
        }
        None => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let next = if request.method() == axum::http::Method::GET { path } else { "/" };
            Redirect::to(&format!("/login?next={}", html::encode_query(next))).into_response()
        }
    }
}

/// Pages are not framed, not sniffed, and run only their own scripts.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

/// Whether a form's CSRF token is the session's.
pub fn csrf_ok(session: &SessionRow, presented: &str) -> bool {
    !presented.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(presented.as_bytes()))
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

/// Only paths of this site: `/x`, never `//host` or a URL.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Html<String> {
    Html(html::render(&pages::LoginPage { next: safe_next(q.next.as_deref()), error: String::new() }))
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

async fn login(State(server): State<Arc<Server>>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(Some(&f.next));
    let token = f.token.trim();
    let found = if token.is_empty() || token.len() > 200 {
        None
    } else {
        server.store.use_token(&auth::hash(token)).await.ok().flatten()
    };
    let Some(t) = found else {
        let page = pages::LoginPage {
            next,
            error: "That token is not valid: check it, or create one with `salve token create`.".into(),
        };
        return (StatusCode::UNAUTHORIZED, Html(html::render(&page))).into_response();
    };
    if t.project_id.is_some() {
        // The pages show every project; a pipeline's token sees its own only.
        let page = pages::LoginPage {
            next,
            error: "That token belongs to one project's pipeline: sign in with your own (`salve token create NAME`)."
                .into(),
        };
        return (StatusCode::FORBIDDEN, Html(html::render(&page))).into_response();
    }
    let (id, _) = auth::new_token();
    let csrf = uuid::Uuid::new_v4().simple().to_string();
    let expires = salve_store::now_ms() + SESSION_DAYS * 24 * 3600 * 1000;
    if let Err(e) = server.store.create_session(&auth::hash(&id), &t.id, &csrf, expires).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot start a session: {e}")).into_response();
    }
    let secure =
        if server.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_DAYS * 24 * 3600);
    let mut r = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(server): State<Arc<Server>>,
    axum::Extension(s): axum::Extension<SessionRow>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return pages::forbidden();
    }
    if let Some(id) = cookie(&headers) {
        let _ = server.store.end_session(&auth::hash(&id)).await;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("salve_session=; Path=/; Max-Age=0"));
    r
}
