//! The embedded forge: one bare repository per hosted project under `<data>/repos`, served over
//! git's smart HTTP protocol by `git http-backend` run as a CGI program. A `post-receive` hook
//! writes the pushed ref updates to a file the server names per request, so each push knows
//! exactly which refs it changed.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use futures_util::StreamExt as _;
use salve_git::Repo;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

const HOOK: &str = "#!/bin/sh\n# Written by Salve: hands the pushed ref updates to the server.\n\
[ -n \"$SALVE_PUSH_FILE\" ] && cat >> \"$SALVE_PUSH_FILE\"\nexit 0\n";

/// A project name: letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.contains("..")
        && !name.ends_with(".git")
}

pub fn repo_dir(data: &Path, name: &str) -> PathBuf {
    data.join("repos").join(format!("{name}.git"))
}

/// Creates the bare repository of a hosted project, with Salve's hook.
pub fn init(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let repo = Repo::new(dir);
    repo.init_bare(Some("main")).map_err(|e| e.to_string())?;
    // Pushes over HTTP need receive-pack switched on; the server checks the token first.
    repo.config_set("http.receivepack", "true").map_err(|e| e.to_string())?;
    install_hook(dir)
}

pub fn install_hook(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = dir.join("hooks").join("post-receive");
    std::fs::create_dir_all(dir.join("hooks")).map_err(|e| e.to_string())?;
    std::fs::write(&hook, HOOK).map_err(|e| format!("cannot write {}: {e}", hook.display()))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
}

/// The branches and tags of a bare repository, with the object each points at.
pub fn refs(dir: &Path) -> Vec<(String, String)> {
    Repo::new(dir).refs()
}

/// One ref a push changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

impl RefUpdate {
    pub fn deleted(&self) -> bool {
        self.new.bytes().all(|b| b == b'0')
    }
}

/// Parses the hook's lines (`<old> <new> <ref>`).
pub fn parse_updates(text: &str) -> Vec<RefUpdate> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
            let hex = |s: &str| s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
            (hex(old) && hex(new)).then(|| RefUpdate { old: old.into(), new: new.into(), name: name.into() })
        })
        .collect()
}

/// Whether the request is (the start of) a push.
pub fn is_push(path: &str, query: &str) -> bool {
    path.ends_with("/git-receive-pack") || query.split('&').any(|kv| kv == "service=git-receive-pack")
}

/// `git-http-backend` in git's exec path, looked up once.
fn backend_program() -> Result<&'static Path, String> {
    static PROGRAM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = PROGRAM.get() {
        return Ok(p);
    }
    let exec = salve_git::exec_path().map_err(|e| e.to_string())?;
    Ok(PROGRAM.get_or_init(|| exec.join("git-http-backend")))
}

/// What `git http-backend` needs of a request.
pub struct CgiRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Body,
    /// The most bytes of the body passed on: a longer push is cut off there (and fails).
    pub max_body: u64,
}

/// Runs `git http-backend` for one request under `root` (the folder of bare repositories).
/// `path` is the part after `/git` (`/NAME.git/info/refs`, ...). Returns the response and, for
/// a push, the file the hook writes the ref updates to once the child ends (`done` is sent then).
pub async fn http_backend(
    root: &Path,
    request: CgiRequest<'_>,
    push_file: Option<PathBuf>,
    done: tokio::sync::oneshot::Sender<()>,
) -> Result<Response<Body>, String> {
    let CgiRequest { method, path, query, headers, body, max_body } = request;
    let backend = backend_program()?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut cmd = tokio::process::Command::new(backend);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", root)
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "salve")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(f) = &push_file {
        cmd.env("SALVE_PUSH_FILE", f);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run git http-backend: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut passed = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            passed += chunk.len() as u64;
            if passed > max_body {
                tracing::warn!("a push was cut off at {max_body} bytes (max_push_mb in salve.toml)");
                break;
            }
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        drop(stdin);
    });
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut status = StatusCode::OK;
    let mut response = Response::builder();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split(' ').next().and_then(|c| c.parse().ok()).unwrap_or(500);
                status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            } else {
                response = response.header(name, value);
            }
        }
    }
    tokio::spawn(async move {
        let mut errors = String::new();
        let _ = stderr.read_to_string(&mut errors).await;
        let _ = child.wait().await;
        if !errors.trim().is_empty() {
            tracing::debug!(target: "salve::forge", "git http-backend: {}", errors.trim());
        }
        let _ = done.send(());
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    response.status(status).body(body).map_err(|e| e.to_string())
}
