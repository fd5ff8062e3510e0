//! `salve demo`: Salve's main job, end to end, on this machine. An embedded server in a fresh
//! data folder; a sample Rust crate with self-healing wired in (`salve init --self-heal`'s
//! files) whose commit fails CI on formatting; the push; then the timeline as it happens: CI
//! failed, the heal pipeline's fixer, `selfheal-<sha>` pushed, CI passed there, the pull request
//! opened. Exits 0 when the pull request is open, with the time each phase took.

use std::time::{Duration, Instant};

use salve_contract::{RunResult, RunState, api};
use serde_json::json;

use crate::client::{Client, encode};
use crate::{err, out};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the data folder and sample project here instead of a new temporary folder.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Print the phase timings as one JSON object at the end (for benchmarks).
    #[arg(long)]
    json: bool,
    /// formatting: a failure the fixers heal (no model needed). logic-bug: a wrong result only
    /// an agent can fix; needs a model (SALVE_MODEL_URL, OPENAI_API_KEY or ANTHROPIC_API_KEY).
    #[arg(long, default_value = "formatting", value_parser = ["formatting", "logic-bug"])]
    scenario: String,
    /// Run every job on this many self-hosted agents (`salve agent` processes of the agent type
    /// s1-demo, each with a data folder of its own) instead of in the server (0: in the server).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=8))]
    agents: u32,
}

/// The agent type the demo's agents belong to with `--agents`.
const DEMO_AGENT_TYPE: &str = "s1-demo";

/// The demo's agent processes: stopped with SIGTERM (they finish and disconnect) when dropped.
struct Agents(Vec<std::process::Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &self.0 {
            let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// Starts `count` agents of [`DEMO_AGENT_TYPE`] for the server at `url`.
fn start_agents(client: &Client, url: &str, root: &std::path::Path, count: u32) -> Result<Agents, String> {
    let made: api::AgentTypeCreated =
        client.post("/api/v1/agent-types", &api::NewAgentType { name: DEMO_AGENT_TYPE.into() })?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the salve binary: {e}"))?;
    let mut agents = Agents(Vec::new());
    for i in 1..=count {
        let dir = root.join(format!("agent-{i}"));
        let log = std::fs::File::create(root.join(format!("agent-{i}.log"))).map_err(|e| e.to_string())?;
        let child = std::process::Command::new(&exe)
            .args(["agent", "--server", url, "--name", &format!("demo-{i}"), "--slots", "2", "--data-dir"])
            .arg(&dir)
            .env("SALVE_AGENT_TOKEN", &made.registration_token)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start an agent: {e}"))?;
        agents.0.push(child);
    }
    Ok(agents)
}

/// The variables that configure the heal agent's model, handed to the heal job as a secret.
const MODEL_VARS: &[&str] = &[
    "SALVE_MODEL_URL",
    "SALVE_MODEL",
    "SALVE_MODEL_KEY",
    "SALVE_MODEL_API",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
];

const SEMAPHORE_YML: &str = r#"version: v1.0
name: CI
agent:
  machine:
    type: e1-standard-2
blocks:
  - name: Format
    dependencies: []
    task:
      jobs:
        - name: cargo fmt
          commands:
            - checkout
            - cargo fmt --check
  - name: Test
    dependencies: [Format]
    task:
      jobs:
        - name: cargo test
          matrix:
            - env_var: RUST_TOOLCHAIN
              values: ["stable", "beta"]
          commands:
            - checkout
            - cargo test
"#;

pub fn run(args: &DemoArgs) -> u8 {
    match demo(args) {
        Ok(()) => 0,
        Err(e) => {
            err!("salve demo: {e}");
            1
        }
    }
}

/// The sample project's files: its CI pipeline and a crate (`salve init --self-heal` adds the rest).
fn sample_files(logic_bug: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        (".semaphore/semaphore.yml", SEMAPHORE_YML),
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", if logic_bug { LOGIC_BUG_RS } else { LIB_RS }),
        (".gitignore", "target/\n"),
    ]
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("salve-demo-{}", uuid::Uuid::new_v4().simple())),
    };
    let (data, work) = (root.join("data"), root.join("sample"));
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create {}: {e}", data.display()))?;
    out!("Salve demo: a CI server, a project whose CI fails, and the heal, in {}", root.display());
    ensure_sandbox()?;
    let started = Instant::now();
    let (url, token) = start_server(&data, args.agents)?;
    out!("  server      {url} (embedded; data in {})", data.display());
    let client = Client::with_token(&url, &token)?;
    let agents = if args.agents > 0 {
        let agents = start_agents(&client, &url, &root, args.agents)?;
        out!(
            "  agents      {} `salve agent` processes of {DEMO_AGENT_TYPE} run every job (logs in {})",
            args.agents,
            root.display()
        );
        Some(agents)
    } else {
        None
    };
    let project: api::Project =
        client.post("/api/v1/projects", &api::NewProject { name: "sample".into(), ..Default::default() })?;
    let git_url = project.git_url.unwrap_or_default();
    let logic_bug = args.scenario == "logic-bug";
    let model: Vec<api::SecretVariable> = MODEL_VARS
        .iter()
        .filter_map(|k| {
            let value = std::env::var(k).ok().filter(|v| !v.is_empty())?;
            Some(api::SecretVariable { name: (*k).to_owned(), value })
        })
        .collect();
    if logic_bug && !model.iter().any(|v| v.name != "SALVE_MODEL" && v.name != "SALVE_MODEL_API") {
        return Err("the logic-bug scenario needs a model for the agent: set SALVE_MODEL_URL (any OpenAI-compatible server), OPENAI_API_KEY or ANTHROPIC_API_KEY".into());
    }
    if logic_bug {
        let secret = api::NewSecret { name: "model".into(), env_vars: model, files: Vec::new() };
        client.post::<api::SecretSaved>("/api/v1/secrets", &secret)?;
    }
    for (path, text) in sample_files(logic_bug) {
        let p = work.join(path);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    crate::init_cmd::self_heal(
        &work,
        "main",
        crate::init_cmd::SELFHEAL_YML,
        &crate::init_cmd::selfheal_pr_yml("main"),
    )?;
    out!("  init        salve init --self-heal: the two promotions, selfheal.yml, selfheal-pr.yml");
    if logic_bug {
        // The heal job gets the model through the secret (the commented lines init wrote).
        let heal = work.join(".semaphore/selfheal.yml");
        let text = std::fs::read_to_string(&heal).map_err(|e| e.to_string())?;
        let text = text.replace("      # secrets:\n      #   - name: model", "      secrets:\n        - name: model");
        std::fs::write(&heal, text).map_err(|e| e.to_string())?;
    }
    let repo = salve_git::Repo::new(&work);
    let sha = repo
        .init("main")
        .and_then(|()| repo.add_all())
        .and_then(|()| repo.commit_as("Demo User", "demo@salve.invalid", "Add add()"))
        .map_err(|e| format!("cannot commit the sample project: {e}"))?;
    if logic_bug {
        out!("  project     sample: a Rust crate whose sub() adds, so `cargo test` fails; the agent's turn");
    } else {
        out!("  project     sample: a Rust crate; `src/lib.rs` is not formatted, so `cargo fmt --check` fails");
    }
    let pushed = Instant::now();
    let pushed_unix_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    repo.push(&git_url, "HEAD:refs/heads/main", Some(&token)).map_err(|e| format!("cannot push: {e}"))?;
    out!("{} pushed main at {}", stamp(pushed), &sha[..7]);
    let timeline = watch(&client, pushed, pushed_unix_ms, Duration::from_secs(args.timeout))?;
    if agents.is_some() {
        out!("  {}", where_jobs_ran(&client)?);
    }
    drop(agents);
    // From the server's clock: the first pipeline's creation (the push's end) to the pull
    // request pipeline's end. Salve's share: each pipeline's time outside its jobs' commands,
    // plus the gaps between one pipeline's end and the next one's creation.
    let ps: Vec<&Phase> = timeline.phases.iter().map(|(_, p)| p).collect();
    let first = ps.iter().map(|p| p.created_ms).min().unwrap_or(0);
    let last = ps.iter().map(|p| p.done_ms).max().unwrap_or(0);
    let total_ms = (last - first).max(0) as u64;
    let gaps: i64 = ps.windows(2).map(|w| (w[1].created_ms - w[0].done_ms).max(0)).sum();
    let salve_ms = ps.iter().map(|p| p.wall_ms.saturating_sub(p.user_ms)).sum::<u64>() + gaps as u64;
    out!("");
    out!(
        "Push to pull request in {:.2}s (the push itself {:.2}s before that; setup {:.1}s):",
        total_ms as f64 / 1000.0,
        timeline.push_ms as f64 / 1000.0,
        (pushed - started).as_secs_f64()
    );
    let mut phases = serde_json::Map::new();
    for (name, p) in &timeline.phases {
        let overhead = p.wall_ms.saturating_sub(p.user_ms);
        out!(
            "  {name:<18} {:>6.2}s   job commands {:>5.2}s   Salve {:>5.2}s",
            p.wall_ms as f64 / 1000.0,
            p.user_ms as f64 / 1000.0,
            overhead as f64 / 1000.0
        );
        phases.insert((*name).into(), json!({"wall_ms": p.wall_ms, "user_ms": p.user_ms}));
    }
    out!(
        "  Salve's own time {:.2}s of {:.2}s ({:.0}%): pipelines' time outside job commands, and between pipelines",
        salve_ms as f64 / 1000.0,
        total_ms as f64 / 1000.0,
        100.0 * salve_ms as f64 / total_ms.max(1) as f64
    );
    out!("");
    out!("Look at it: the data folder is kept. Start the server again and ask it:");
    out!("  salve serve --data-dir {} --listen {}", data.display(), url.trim_start_matches("http://"));
    out!(
        "  SALVE_TOKEN=$(cat {}) salve pr show {} --project sample --server {url}",
        data.join("demo-token").display(),
        timeline.pull
    );
    out!("  web: {url}/projects/sample/pulls/{} (sign in with the token)", timeline.pull);
    if args.json {
        out!(
            "{}",
            json!({"total_ms": total_ms, "push_ms": timeline.push_ms, "salve_ms": salve_ms, "phases": phases, "pull": timeline.pull})
        );
    }
    Ok(())
}

/// The demo runs on a fresh machine: bubblewrap, the sandbox every job runs in, is installed
/// when it is missing and this user may (root, or sudo without a password), with apt-get.
fn ensure_sandbox() -> Result<(), String> {
    match salve_runner::find_bwrap() {
        Ok(_) => return Ok(()),
        Err(salve_runner::SandboxError::Missing) => {}
        Err(e) => return Err(format!("every job runs in the sandbox: {e}")),
    }
    let missing = || {
        "every job runs in the sandbox and bubblewrap is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap) and run the demo again".to_owned()
    };
    if !std::path::Path::new("/usr/bin/apt-get").is_file() {
        return Err(missing());
    }
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut cmd = if root { std::process::Command::new("apt-get") } else { std::process::Command::new("sudo") };
        if !root {
            cmd.args(["-n", "apt-get"]);
        }
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive").output().is_ok_and(|o| o.status.success())
    };
    out!("  setup       installing bubblewrap, the sandbox every job runs in (apt-get install bubblewrap)");
    let installed = apt(&["install", "-y", "-qq", "bubblewrap"])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "bubblewrap"]));
    if !installed {
        return Err(missing());
    }
    salve_runner::find_bwrap().map(|_| ()).map_err(|e| format!("every job runs in the sandbox: {e}"))
}

/// Which agent ran the project's jobs: "jobs on agents: 9 of 9 (demo-1: 5, demo-2: 4)".
fn where_jobs_ran(client: &Client) -> Result<String, String> {
    let list: api::PipelineList = client.get("/api/v1/pipelines?project=sample")?;
    let (mut total, mut by) = (0, std::collections::BTreeMap::<String, u32>::new());
    for p in &list.pipelines {
        let shown: api::Pipeline = client.get(&format!("/api/v1/pipelines/{}", encode(&p.id)))?;
        for j in shown.blocks.iter().flat_map(|b| &b.jobs) {
            total += 1;
            if let Some(a) = &j.agent {
                *by.entry(a.clone()).or_default() += 1;
            }
        }
    }
    let on: u32 = by.values().sum();
    let each: Vec<String> = by.iter().map(|(a, n)| format!("{a}: {n}")).collect();
    Ok(format!("jobs on agents: {on} of {total} ({})", each.join(", ")))
}

fn stamp(since: Instant) -> String {
    format!("[{:>5.1}s]", since.elapsed().as_secs_f64())
}

/// Starts the server on a thread of its own, with a token for the demo; returns its URL.
fn start_server(data: &std::path::Path, agents: u32) -> Result<(String, String), String> {
    let mut config = salve_server::Config::new(data.to_owned());
    config.listen = "127.0.0.1:0".into();
    config.exe = Some(std::env::current_exe().map_err(|e| format!("cannot find the salve binary: {e}"))?);
    config.jobs = config.jobs.max(2);
    if agents > 0 {
        // Every job goes to the agents; none runs in the server.
        config.jobs = 0;
        config.agent_pool = Some(DEMO_AGENT_TYPE.into());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let db = config.database_url.clone();
    let token = rt.block_on(async {
        let store = salve_store::Store::open(&db).await.map_err(|e| e.to_string())?;
        salve_server::auth::create(&store, "demo").await.map(|(_, t)| t).map_err(|e| e.to_string())
    })?;
    let token_file = data.join("demo-token");
    std::fs::write(&token_file, &token).map_err(|e| format!("cannot write {}: {e}", token_file.display()))?;
    let _ = std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let served = rt.block_on(salve_server::serve(config, |url| {
            let _ = tx.send(Ok(url.to_owned()));
        }));
        if let Err(e) = served {
            let _ = tx.send(Err(e.to_string()));
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| "the server did not start in 30 s".to_owned())??;
    Ok((url, token))
}

#[derive(Default, Clone, Copy)]
struct Phase {
    wall_ms: u64,
    user_ms: u64,
    created_ms: i64,
    done_ms: i64,
}

struct Timeline {
    phases: Vec<(&'static str, Phase)>,
    pull: i64,
    /// From the start of `git push` to the server's creation of the first pipeline.
    push_ms: u64,
}

/// Follows the project's pipelines, heals and pull requests until a pull request is open,
/// printing each step once.
fn watch(client: &Client, pushed: Instant, pushed_unix_ms: i64, limit: Duration) -> Result<Timeline, String> {
    let mut said = std::collections::HashSet::new();
    let say = |said: &mut std::collections::HashSet<String>, key: String, line: String| {
        if said.insert(key) {
            out!("{} {line}", stamp(pushed));
        }
    };
    let mut phases: Vec<(&'static str, Phase)> = Vec::new();
    loop {
        if pushed.elapsed() > limit {
            return Err(format!(
                "no pull request after {} s; see the pipelines with `salve pipeline list`",
                limit.as_secs()
            ));
        }
        let mut pipelines = client.get::<api::PipelineList>("/api/v1/pipelines?project=sample&limit=50")?.pipelines;
        pipelines.sort_by_key(|p| p.created_ms);
        for p in &pipelines {
            let id = &p.id;
            let (branch, name) = (p.branch.as_str(), p.name.as_str());
            let what = format!("{name} on {branch}");
            if p.state != RunState::Queuing {
                say(&mut said, format!("{id} started"), format!("{what}: started"));
            }
            if p.state != RunState::Done || said.contains(&format!("{id} done")) {
                continue;
            }
            let detail: api::Pipeline = client.get(&format!("/api/v1/pipelines/{}", encode(id)))?;
            let phase = phase_of(client, &detail)?;
            let result = p.result.map_or("", RunResult::as_str);
            say(&mut said, format!("{id} done"), format!("{what}: {result} in {:.1}s", phase.wall_ms as f64 / 1000.0));
            for j in detail.blocks.iter().flat_map(|b| &b.jobs).filter(|j| j.result == Some(RunResult::Failed)) {
                let Ok(f) = client.get::<api::Failure>(&format!("/api/v1/jobs/{}/failure", encode(&j.id))) else {
                    continue;
                };
                let f = f.report;
                out!(
                    "          job '{}' failed: {} in `{}`",
                    j.name,
                    f.class.words(),
                    f.failing_command.as_deref().unwrap_or("")
                );
                for l in f.excerpt.iter().take(4) {
                    out!("          {:>5} | {}", l.line, l.text);
                }
            }
            let label = match (name, branch.starts_with("selfheal-")) {
                ("Self-heal", _) => {
                    heal_lines(client, pushed)?;
                    "heal"
                }
                ("Self-heal pull request", _) => "pull request",
                (_, false) => "first CI run",
                (_, true) => "second CI run",
            };
            phases.push((label, phase));
        }
        let pulls = client.get::<api::PullList>("/api/v1/pulls?project=sample&state=open")?.pulls;
        if let Some(pr) = pulls.first() {
            // The pull-request pipeline ends right after it opens the pull request.
            let done = pipelines.iter().any(|p| p.name == "Self-heal pull request" && p.state == RunState::Done);
            if done {
                out!("{} pull request #{} opened: {} ({} -> {})", stamp(pushed), pr.number, pr.title, pr.head, pr.base);
                let first = phases.iter().map(|(_, p)| p.created_ms).min().unwrap_or(0);
                let push_ms = (first - pushed_unix_ms).max(0) as u64;
                return Ok(Timeline { phases, pull: pr.number, push_ms });
            }
        }
        if let Some(p) = pipelines.iter().find(|p| p.state == RunState::Done && !p.passed() && p.name != "CI") {
            return Err(format!(
                "{} on {} {}: see `salve pipeline show {}`",
                p.name,
                p.branch,
                p.result.map_or("", RunResult::as_str),
                p.id
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the heal did, from its record.
fn heal_lines(client: &Client, pushed: Instant) -> Result<(), String> {
    let heals = client.get::<api::HealList>("/api/v1/heals?project=sample")?.heals;
    let Some(h) = heals.first() else { return Ok(()) };
    let r = &h.report;
    for t in &r.tiers {
        out!("          tier {} {}: {} ({})", t.tier, t.name, t.result, t.detail);
    }
    let outcome = h.outcome.map_or_else(String::new, |o| o.to_string());
    out!("{} heal {outcome}: {}", stamp(pushed), r.summary);
    if let Some(branch) = &r.heal_branch {
        out!("          {branch} pushed: {}", r.diff_stat.as_deref().unwrap_or("").lines().last().unwrap_or("").trim());
    }
    Ok(())
}

/// A done pipeline's wall time, and the critical path of its user commands (blocks in
/// sequence, jobs of a block in parallel).
fn phase_of(client: &Client, detail: &api::Pipeline) -> Result<Phase, String> {
    let (created_ms, done_ms) = (detail.pipeline.created_ms, detail.pipeline.done_ms.unwrap_or(0));
    let mut user = 0;
    for b in &detail.blocks {
        let mut longest = 0;
        for j in &b.jobs {
            let job: api::Job = client.get(&format!("/api/v1/jobs/{}", encode(&j.id)))?;
            longest = longest.max(job.commands.iter().map(|c| c.duration_ms).sum::<i64>());
        }
        user += longest;
    }
    Ok(Phase { wall_ms: (done_ms - created_ms).max(0) as u64, user_ms: user.max(0) as u64, created_ms, done_ms })
}

const CARGO_TOML: &str = "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n";

/// Correct code, badly formatted: `cargo fmt --check` fails, `cargo fmt` would fix it.
const LIB_RS: &str = "pub fn add(a:i32,b:i32)->i32{a+b}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 2), 4);\n    }\n}\n";

/// Formatted, and wrong: only reading the code and the test tells what to change.
const LOGIC_BUG_RS: &str = "/// The difference of two numbers.\npub fn sub(a: i32, b: i32) -> i32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn subtracts() {\n        assert_eq!(super::sub(3, 1), 2);\n    }\n}\n";
