//! The server's API through its router, in-crate: no listening socket, no binary, a real store
//! in a temporary folder. The end-to-end suites (`crates/cli/tests`) drive the whole binary.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::config::Config;
use crate::server::Server;

struct Api {
    server: Arc<Server>,
    token: String,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().expect("a folder");
        let data = dir.path().to_path_buf();
        let store = salve_store::Store::open(&crate::config::default_database(&data)).await.expect("a store");
        let config = Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data,
            database_url: String::new(),
            public_url: Some("http://ci.example.invalid".into()),
            jobs: 1,
            agent_pool: None,
            agent_lost_after_seconds: 30,
            toolchains_dir: None,
            sandbox: false,
            network: false,
            max_body_bytes: 1 << 20,
            max_push_bytes: 1 << 20,
            job_memory_bytes: None,
            job_max_processes: None,
            exe: None,
            mcp_allowed_hosts: Vec::new(),
            mcp_write_tools: false,
            os_images: Default::default(),
        };
        let server = Server::new(config, store).await.expect("a server");
        let (_, token) = crate::auth::create(&server.store, "admin").await.expect("a token");
        Api { server, token, _dir: dir }
    }

    /// Sends a request (with the admin token unless `anonymous`) and returns the status and
    /// the JSON body.
    async fn send(&self, method: &str, path: &str, body: Option<Value>, anonymous: bool) -> (StatusCode, Value) {
        let token = self.token.clone();
        self.send_as(method, path, body, (!anonymous).then_some(token.as_str())).await
    }

    /// Sends a request with `bearer` (an agent's or a registration token) as its token.
    async fn send_as(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("a request");
        let res = crate::api::router(self.server.clone()).oneshot(req).await.expect("an answer");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.expect("a body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_through_the_router() {
    let api = Api::new().await;
    let (status, _) = api.send("GET", "/api/v1/projects", None, true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token, no projects");

    let (status, created) = api.send("POST", "/api/v1/projects", Some(json!({"name": "demo"})), false).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["git_url"], "http://ci.example.invalid/git/demo.git");
    let (status, list) = api.send("GET", "/api/v1/projects", None, false).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["projects"].as_array().map(Vec::len), Some(1), "{list}");
    let (status, one) = api.send("GET", "/api/v1/projects/demo", None, false).await;
    assert_eq!((status, one["name"].as_str()), (StatusCode::OK, Some("demo")));

    let (status, err) = api.send("GET", "/api/v1/projects/nope", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    let (status, err) = api.send("POST", "/api/v1/projects", Some(json!({"name": "demo", "colour": 1})), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown field is refused: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_need_a_pushed_branch_and_pipelines_exist() {
    let api = Api::new().await;
    api.send("POST", "/api/v1/projects", Some(json!({"name": "demo"})), false).await;
    let (status, err) = api.send("POST", "/api/v1/workflows", Some(json!({"project": "demo"})), false).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert!(err.to_string().contains("push it first"), "{err}");
    let (status, err) =
        api.send("POST", "/api/v1/workflows", Some(json!({"project": "demo", "branch": "-x"})), false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an option is no branch: {err}");
    let (status, _) = api.send("GET", "/api/v1/pipelines/no-such-pipeline", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The checked-in `openapi.json` (served at `/api/v1/openapi.json`) is the document the
/// contract's types and routes make. After changing them, `SALVE_BLESS=1 cargo test -p
/// salve-server openapi` writes it again.
#[test]
fn the_openapi_document_is_made_from_the_contract() {
    let made = salve_contract::openapi::text();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/openapi.json");
    if std::env::var_os("SALVE_BLESS").is_some() {
        std::fs::write(&path, &made).expect("openapi.json written");
    }
    let kept = std::fs::read_to_string(&path).expect("openapi.json");
    assert!(
        kept == made,
        "openapi.json is not the document the contract makes: run `SALVE_BLESS=1 cargo test -p salve-server openapi`"
    );
    assert_eq!(crate::api::OPENAPI, kept, "the server serves the checked-in document");
}

/// Every route the document lists is routed (none falls through to the API's 'no such call'),
/// and each JSON answer of a route that needs nothing stored parses as the contract's type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    use salve_contract::openapi::{Method, ROUTES};
    let api = Api::new().await;
    for r in ROUTES {
        let path = r.path.replace("{project}", "demo").replace("{number}", "1").replace("{name}", "demo");
        let path = path.replace("{id}", "no-such-id");
        let method = match r.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        };
        if path.ends_with("/stream") || path.ends_with("/events") {
            continue;
        }
        let (status, body) = api.send(method, &path, r.body.map(|_| json!({})), false).await;
        let unrouted = body.to_string().contains("no such API call") || status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(!unrouted, "{method} {} is documented but not routed: {status} {body}", r.path);
    }
    let (_, health) = api.send("GET", "/api/v1/health", None, true).await;
    serde_json::from_value::<salve_contract::api::Health>(health).expect("a Health");
    let (_, projects) = api.send("GET", "/api/v1/projects", None, false).await;
    serde_json::from_value::<salve_contract::api::ProjectList>(projects).expect("a ProjectList");
    let (_, error) = api.send("GET", "/api/v1/projects/nope", None, false).await;
    serde_json::from_value::<salve_contract::api::Error>(error).expect("an Error");
}

/// Commits `files` on branch `main` of the hosted project `name` (as a push would, without the
/// hook: the caller starts the workflow through the API).
fn commit_to(api: &Api, name: &str, files: &[(&str, &str)]) {
    let work = tempfile::tempdir().expect("a folder");
    for (path, text) in files {
        let p = work.path().join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("folders");
        std::fs::write(p, text).expect("a file");
    }
    let repo = salve_git::Repo::new(work.path());
    repo.init("main").expect("git init");
    repo.add_all().expect("git add");
    let sha = repo.commit_as("t", "t@example.invalid", "a commit").expect("a commit");
    let bare = crate::forge::repo_dir(&api.server.config.data_dir, name);
    repo.push_local(&bare, &sha, "refs/heads/main").expect("pushed");
}

/// Agent types: created with a registration token shown once, listed, refused when misnamed or
/// taken, disabled; a project's token may not touch them; a pipeline whose jobs name an unknown
/// or disabled `s1-` type fails at creation and says what to do, one whose type exists queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_types_gate_the_pipelines_that_name_them() {
    let api = Api::new().await;
    let (status, made) = api.send("POST", "/api/v1/agent-types", Some(json!({"name": "s1-gpu"})), false).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let made: salve_contract::api::AgentTypeCreated = serde_json::from_value(made).expect("a created type");
    assert!(made.registration_token.starts_with("salve_") && made.registration_token.len() > 40);
    let (status, list) = api.send("GET", "/api/v1/agent-types", None, false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(&made.registration_token), "the token is never listed: {list}");
    let (status, err) = api.send("POST", "/api/v1/agent-types", Some(json!({"name": "s1-gpu"})), false).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    for bad in ["gpu", "s1-", "s1-a b", "s1-../x", &format!("s1-{}", "x".repeat(65))] {
        let (status, err) = api.send("POST", "/api/v1/agent-types", Some(json!({"name": bad})), false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert!(err.to_string().contains("not an agent type name"), "{err}");
    }

    // A project's token (a promoted pipeline's jobs') may not create or disable agent types.
    api.send("POST", "/api/v1/projects", Some(json!({"name": "demo"})), false).await;
    let project = api.server.store.project("demo").await.expect("the store").expect("the project");
    let (_, scoped) =
        crate::auth::create_for(&api.server.store, "pipeline x", Some(&project.id)).await.expect("a token");
    let scoped_api = Api { server: api.server.clone(), token: scoped, _dir: tempfile::tempdir().expect("a folder") };
    let (status, err) = scoped_api.send("POST", "/api/v1/agent-types", Some(json!({"name": "s1-mine"})), false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");

    let pipeline = |machine: &str| {
        format!(
            "version: v1.0\nname: P\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2004\nblocks:\n  - name: B\n    task:\n      agent:\n        machine:\n          type: {machine}\n      jobs:\n        - name: J\n          commands:\n            - echo hi\n"
        )
    };
    let start = |api: &Api| {
        let api =
            Api { server: api.server.clone(), token: api.token.clone(), _dir: tempfile::tempdir().expect("a folder") };
        async move {
            let (status, started) =
                api.send("POST", "/api/v1/workflows", Some(json!({"project": "demo", "branch": "main"})), false).await;
            assert_eq!(status, StatusCode::CREATED, "{started}");
            let id = started["pipeline_id"].as_str().expect("a pipeline id").to_owned();
            let (_, p) = api.send("GET", &format!("/api/v1/pipelines/{id}"), None, false).await;
            p
        }
    };
    commit_to(&api, "demo", &[(".semaphore/semaphore.yml", &pipeline("s1-nowhere"))]);
    let p = start(&api).await;
    assert_eq!((p["state"].as_str(), p["result_reason"].as_str()), (Some("done"), Some("malformed")), "{p}");
    assert!(p["error"].as_str().is_some_and(|e| e.contains("salve agent-type create s1-nowhere")), "{p}");

    commit_to(&api, "demo", &[(".semaphore/semaphore.yml", &pipeline("s1-gpu"))]);
    let p = start(&api).await;
    assert_eq!(p["error"], Value::Null, "a known type's pipeline is not refused: {p}");

    let (status, disabled) = api.send("POST", "/api/v1/agent-types/s1-gpu/disable", None, false).await;
    assert_eq!((status, disabled["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{disabled}");
    let p = start(&api).await;
    assert!(p["error"].as_str().is_some_and(|e| e.contains("is disabled")), "{p}");
    let (status, _) = api.send("POST", "/api/v1/agent-types/s1-none/disable", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Agents: register with their type's registration token (never an API token), as the server's
/// version, with 1 to 64 slots; heartbeat and say goodbye with their own token; are listed with
/// their state; a disabled type's agents are cut off; a silent agent reads as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_heartbeat_and_leave_with_tokens_of_their_own() {
    let api = Api::new().await;
    let (_, made) = api.send("POST", "/api/v1/agent-types", Some(json!({"name": "s1-pool"})), false).await;
    let registration = made["registration_token"].as_str().expect("a registration token").to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let hello = json!({"name": "box-1", "version": version, "slots": 2});

    for bearer in [None, Some("salve_not-a-token"), Some(api.token.as_str())] {
        let (status, err) = api.send_as("POST", "/api/v1/agents/register", Some(hello.clone()), bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer:?}: {err}");
        assert!(err.to_string().contains("registration token"), "{err}");
    }
    let old = json!({"name": "box-1", "version": "0.0.1", "slots": 2});
    let (status, err) = api.send_as("POST", "/api/v1/agents/register", Some(old), Some(&registration)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err.to_string().contains("same release"), "{err}");
    // Hostile names: a terminal escape, a newline, an empty or overlong name.
    for name in ["box\u{1b}[31m", "a\nb", " ", &"x".repeat(101)] {
        let body = json!({"name": name, "version": version, "slots": 1});
        let (status, err) = api.send_as("POST", "/api/v1/agents/register", Some(body), Some(&registration)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {err}");
    }
    let (status, _) = api.send_as("POST", "/api/v1/agents/heartbeat", None, Some(&"x".repeat(300))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an overlong token is refused before the store is asked");
    for slots in [0, 65] {
        let body = json!({"name": "box-1", "version": version, "slots": slots});
        let (status, err) = api.send_as("POST", "/api/v1/agents/register", Some(body), Some(&registration)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    }

    let (status, reg) = api.send_as("POST", "/api/v1/agents/register", Some(hello.clone()), Some(&registration)).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let reg: salve_contract::api::AgentRegistered = serde_json::from_value(reg).expect("a registration");
    assert_eq!(reg.agent_type, "s1-pool");
    let (status, beat) = api.send_as("POST", "/api/v1/agents/heartbeat", None, Some(&reg.token)).await;
    assert_eq!((status, beat["state"].as_str()), (StatusCode::OK, Some("connected")), "{beat}");
    // Neither token opens the other's doors.
    let (status, _) = api.send_as("POST", "/api/v1/agents/heartbeat", None, Some(&api.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.send_as("GET", "/api/v1/agents", None, Some(&reg.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, list) = api.send("GET", "/api/v1/agents", None, false).await;
    assert_eq!(status, StatusCode::OK);
    let list: salve_contract::api::AgentList = serde_json::from_value(list).expect("a list");
    assert_eq!((list.agents.len(), list.agents[0].name.as_str(), list.agents[0].slots), (1, "box-1", 2));

    let (status, bye) = api.send_as("POST", "/api/v1/agents/disconnect", None, Some(&reg.token)).await;
    assert_eq!((status, bye["state"].as_str()), (StatusCode::OK, Some("disconnected")), "{bye}");
    let (status, _) = api.send_as("POST", "/api/v1/agents/heartbeat", None, Some(&reg.token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a disconnected agent registers again");

    // A disabled type: its agents are cut off and no new one registers.
    let (_, again) = api.send_as("POST", "/api/v1/agents/register", Some(hello.clone()), Some(&registration)).await;
    let token = again["token"].as_str().expect("a token").to_owned();
    api.send("POST", "/api/v1/agent-types/s1-pool/disable", None, false).await;
    let (status, _) = api.send_as("POST", "/api/v1/agents/heartbeat", None, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.send_as("POST", "/api/v1/agents/register", Some(hello), Some(&registration)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Silent past its lease, an agent reads as lost.
    let row = salve_store::AgentRow { last_seen_ms: 0, ..salve_store::AgentRow::default() };
    let lease_ms = i64::try_from(salve_contract::api::AGENT_LOST_AFTER_SECONDS * 1000).expect("a lease");
    let lost_after = api.server.lease_ms();
    assert_eq!(
        crate::views::agent(&row, lease_ms, lost_after, Vec::new()).state,
        salve_contract::AgentState::Connected
    );
    assert_eq!(crate::views::agent(&row, lease_ms + 1, lost_after, Vec::new()).state, salve_contract::AgentState::Lost);
}

/// Tasks: made with a schedule and parameters (bad ones refused with what to fix), listed,
/// run by hand with parameters (exported to the pipeline) on their file and branch, fired once
/// by the schedule however many times the servers look, paused and resumed; a pipeline's token
/// reads its own project's tasks, runs and changes none, and never sees another project's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_by_hand_and_on_schedule() {
    let api = Api::new().await;
    for name in ["demo", "other"] {
        api.send("POST", "/api/v1/projects", Some(json!({"name": name})), false).await;
    }
    let nightly = "version: v1.0\nname: Nightly\nagent:\n  machine:\n    type: e1-standard-2\nblocks:\n  - name: B\n    task:\n      jobs:\n        - name: J\n          commands:\n            - echo $TARGET\n";
    commit_to(&api, "demo", &[(".semaphore/semaphore.yml", nightly), (".semaphore/nightly.yml", nightly)]);
    let new = |extra: Value| {
        let mut body = json!({"project": "demo", "name": "nightly", "pipeline_file": ".semaphore/nightly.yml",
            "schedule": "0 3 * * *",
            "parameters": [{"name": "TARGET", "required": true, "regex_pattern": "staging|production"},
                           {"name": "DRY_RUN", "default_value": "true"}]});
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        body
    };
    for (bad, says) in [
        (json!({"schedule": "0 3 * *"}), "give five fields"),
        (json!({"schedule": "0 0 30 2 *"}), "never fires"),
        (json!({"pipeline_file": "../etc/x.yml"}), "is not a pipeline file"),
        (json!({"branch": "-x"}), "is not a branch name"),
        (json!({"parameters": [{"name": "1X"}]}), "is not a parameter name"),
        (json!({"parameters": [{"name": "A", "regex_pattern": "("}]}), "is not a regular expression"),
        (json!({"parameters": [{"name": "A", "regex_pattern": "a+", "default_value": "b"}]}), "does not match"),
    ] {
        let (status, err) = api.send("POST", "/api/v1/tasks", Some(new(bad.clone())), false).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert!(err.to_string().contains(says), "{bad}: {err}");
    }
    let (status, task) = api.send("POST", "/api/v1/tasks", Some(new(json!({}))), false).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().expect("an id").to_owned();
    assert!(task["next_run_ms"].as_i64().is_some_and(|n| n > salve_store::now_ms()), "{task}");
    let (status, _) = api.send("POST", "/api/v1/tasks", Some(new(json!({}))), false).await;
    assert_eq!(status, StatusCode::CONFLICT, "one name per project");
    let (_, list) = api.send("GET", "/api/v1/tasks?project=demo", None, false).await;
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(1), "{list}");

    // By hand: a required parameter, then a value its pattern refuses, then a good run.
    let run_path = format!("/api/v1/tasks/{id}/run");
    let run = |body: Value| api.send("POST", &run_path, Some(body), false);
    let (status, err) = run(json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(err.to_string().contains("needs parameter 'TARGET'"), "{err}");
    let (status, err) = run(json!({"parameters": {"TARGET": "prod"}})).await;
    assert!(status == StatusCode::UNPROCESSABLE_ENTITY && err.to_string().contains("must match"), "{err}");
    let (status, err) = run(json!({"branch": "nope", "parameters": {"TARGET": "staging"}})).await;
    assert!(status == StatusCode::NOT_FOUND && err.to_string().contains("no branch nope"), "{err}");
    let (status, ran) = run(json!({"parameters": {"TARGET": "staging"}})).await;
    assert_eq!(status, StatusCode::CREATED, "{ran}");
    let (_, p) = api
        .send("GET", &format!("/api/v1/pipelines/{}", ran["pipeline_id"].as_str().expect("an id")), None, false)
        .await;
    assert_eq!(p["file"], ".semaphore/nightly.yml", "{p}");
    assert_eq!(p["params"], json!({"TARGET": "staging", "DRY_RUN": "true"}), "{p}");
    let (_, w) = api
        .send("GET", &format!("/api/v1/workflows/{}", ran["workflow_id"].as_str().expect("an id")), None, false)
        .await;
    assert_eq!(w["triggered_by"], "task", "{w}");

    // The schedule: its run is due now; however many times servers look, it fires once.
    let t = api.server.store.task(&id).await.expect("the store").expect("the task");
    assert!(api.server.store.set_task_paused(&id, false, Some(salve_store::now_ms() - 1)).await.expect("the store"));
    let (a, b) = tokio::join!(api.server.fire_due_tasks(), api.server.fire_due_tasks());
    let _ = (a, b, t);
    let (_, detail) = api.send("GET", &format!("/api/v1/tasks/{id}"), None, false).await;
    let triggers = detail["recent_triggers"].as_array().expect("triggers").clone();
    assert_eq!(triggers.len(), 2, "one by hand, one scheduled: {detail}");
    // Scheduled without TARGET (required, no default): kept with why it could not start.
    assert_eq!(triggers[0]["scheduled"], true, "{detail}");
    assert!(triggers[0]["error_message"].as_str().is_some_and(|e| e.contains("needs parameter 'TARGET'")), "{detail}");
    assert!(detail["task"]["next_run_ms"].as_i64().is_some_and(|n| n > salve_store::now_ms()), "moved on: {detail}");

    // Paused: no next run; resumed: one again.
    let (_, paused) = api.send("POST", &format!("/api/v1/tasks/{id}/pause"), None, false).await;
    assert_eq!((paused["paused"].as_bool(), paused["next_run_ms"].clone()), (Some(true), Value::Null), "{paused}");
    let (_, resumed) = api.send("POST", &format!("/api/v1/tasks/{id}/resume"), None, false).await;
    assert!(resumed["next_run_ms"].as_i64().is_some(), "{resumed}");

    // A pipeline's token: reads its own project's tasks, runs and makes none, sees no other's.
    let demo = api.server.store.project("demo").await.expect("the store").expect("demo");
    let other = api.server.store.project("other").await.expect("the store").expect("other");
    let (_, own) = crate::auth::create_for(&api.server.store, "pipeline d", Some(&demo.id)).await.expect("a token");
    let (_, foreign) =
        crate::auth::create_for(&api.server.store, "pipeline o", Some(&other.id)).await.expect("a token");
    let (status, _) = api
        .send_as(
            "POST",
            &format!("/api/v1/tasks/{id}/run"),
            Some(json!({"parameters": {"TARGET": "production"}})),
            Some(&own),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a job starts no workflow");
    let (status, _) = api.send_as("GET", &format!("/api/v1/tasks/{id}"), None, Some(&own)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.send_as("POST", "/api/v1/tasks", Some(new(json!({"name": "mine"}))), Some(&own)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (method, path) in [("GET", format!("/api/v1/tasks/{id}")), ("GET", "/api/v1/tasks?project=demo".into())] {
        let (status, _) = api.send_as(method, &path, Some(json!({})), Some(&foreign)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let (status, _) = api.send_as("DELETE", &format!("/api/v1/tasks/{id}"), None, Some(&own)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.send("DELETE", &format!("/api/v1/tasks/{id}"), None, false).await;
    assert_eq!(status, StatusCode::OK);
}

/// An agent job's lost attempt drops its own storage token only: the next attempt, which may
/// have claimed the job (and made its token) before the lost one's clean-up ran, keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempt_drops_its_own_storage_token_only() {
    let api = Api::new().await;
    let store = &api.server.store;
    let (_, first) =
        crate::auth::create_for(store, &crate::auth::storage_token_name("job-1", 1), None).await.expect("a token");
    let (_, second) =
        crate::auth::create_for(store, &crate::auth::storage_token_name("job-1", 2), None).await.expect("a token");
    let (_, other) =
        crate::auth::create_for(store, &crate::auth::storage_token_name("job-10", 1), None).await.expect("a token");
    api.server.drop_storage_token("job-1", 1).await;
    let valid = |token: String| async move {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().expect("a header"));
        crate::auth::check_any(store, &headers).await.is_some()
    };
    assert!(!valid(first).await, "the lost attempt's token is gone");
    assert!(valid(second).await, "the next attempt keeps its token");
    assert!(valid(other).await, "another job's token stays");
}

/// Hostile task names and parameter names are refused with what to fix; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_task_names_are_refused() {
    let api = Api::new().await;
    api.send("POST", "/api/v1/projects", Some(json!({"name": "demo"})), false).await;
    let long = "x".repeat(101);
    for (name, param) in [
        ("a\nb", "OK"),
        ("\u{1b}[31mred", "OK"),
        ("   ", "OK"),
        (long.as_str(), "OK"),
        ("fine", "$(id)"),
        ("fine", "A B"),
    ] {
        let body = json!({"project": "demo", "name": name, "parameters": [{"name": param}]});
        let (status, err) = api.send("POST", "/api/v1/tasks", Some(body), false).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?} {param:?}: {err}");
        assert!(err.to_string().contains("name"), "{err}");
    }
    let (_, list) = api.send("GET", "/api/v1/tasks?project=demo", None, false).await;
    assert_eq!(list["tasks"].as_array().map(Vec::len), Some(0), "{list}");
}
