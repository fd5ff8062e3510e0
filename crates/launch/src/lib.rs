//! One way to launch a pipeline. `salve run`, the server's dispatcher and (next) agents all put
//! a run together here: the data folder's layout, the sandbox, the job's context, the secrets,
//! the recorder that stores every event before it is announced, and the engine.

pub mod failure;
pub mod record;
pub mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use salve_engine::{Context, Engine, Executor, GitContext, Observer, PipelineControl, PipelineRun, Prior, RefKind};
use salve_git::Repo;
use salve_git::files::AtCommit;
use salve_pipeline::when::change_in::{Build, ChangeIn};
use salve_pipeline::{Mode, Plan, analyze, diag};
use salve_runner::{Isolate, Limits, Sandbox, SandboxError};
use salve_store::secrets::Sealer;
use salve_store::{PipelineRow, Store, WorkflowRow};
use tokio::runtime::Handle;

pub use record::{Recorder, StoredSecrets};

/// Why a pipeline could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create {}: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot link the toolbox into {}: {source}", path.display())]
    Toolbox { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("there is no {file} at commit {sha}: add one (see `salve lint --help`) and push again")]
    NoFile { file: String, sha: String },
    #[error("{file} is malformed:\n{problems}")]
    Malformed { file: String, problems: String },
}

/// Salve's data folder: job logs, the toolbox, each project's cache and artifacts.
#[derive(Debug, Clone)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> DataDir {
        DataDir(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where each job's log, command records and failure report live (`jobs/<job id>`).
    pub fn jobs(&self) -> PathBuf {
        self.0.join("jobs")
    }

    /// The toolbox's commands, linked to the `salve` binary.
    pub fn toolbox(&self) -> PathBuf {
        self.0.join("toolbox")
    }

    pub fn cache(&self, project_id: &str) -> PathBuf {
        self.0.join("cache").join(project_id)
    }

    pub fn artifacts(&self, project_id: &str) -> PathBuf {
        self.0.join("artifacts").join(project_id)
    }

    /// Creates the folders every run needs and links the toolbox to `exe` (the `salve` binary).
    pub fn prepare(&self, exe: Option<&Path>) -> Result<(), LaunchError> {
        for path in [self.jobs(), self.0.join("cache"), self.0.join("artifacts")] {
            create(&path)?;
        }
        if let Some(exe) = exe {
            let path = self.toolbox();
            salve_toolbox::install(&path, exe).map_err(|source| LaunchError::Toolbox { path, source })?;
        }
        Ok(())
    }
}

fn create(path: &Path) -> Result<(), LaunchError> {
    std::fs::create_dir_all(path).map_err(|source| LaunchError::Folder { path: path.to_owned(), source })
}

/// How this machine runs jobs: from `salve run`'s flags or the server's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data: DataDir,
    /// The `salve` binary: the toolbox and the sandbox's jail (`salve __jail`).
    pub exe: Option<PathBuf>,
    pub isolate: Isolate,
    pub limits: Limits,
    /// Jobs of one pipeline running at once.
    pub parallel: usize,
    /// The Salve servers jobs report to (the API, git, storage): where one is on this machine's
    /// loopback, jobs with a network of their own still reach its port.
    pub servers: Vec<String>,
    /// Whether jobs with `agent.containers` run in them (`false`: `salve run --no-containers`).
    pub run_containers: bool,
    /// `os_image` name → the image jobs of that machine run in (through Podman).
    pub os_images: std::collections::BTreeMap<String, String>,
}

impl Settings {
    /// The sandbox jobs run in; Salve's data folder is hidden from them.
    pub fn sandbox(&self) -> Result<Sandbox, LaunchError> {
        let mut sandbox =
            Sandbox::build(self.exe.as_deref(), self.isolate, vec![self.data.path().to_owned()], self.limits)?;
        sandbox.host_ports = self.servers.iter().filter_map(|u| salve_runner::netns::loopback_port(u)).collect();
        Ok(sandbox)
    }
}

/// Who launches: the server (provider `salve`) or `salve run` on a work tree (`local`).
#[derive(Debug, Clone)]
pub struct Site {
    pub provider: &'static str,
    pub organization_id: String,
    pub organization_url: String,
    /// Runs a person started by hand (`salve run`), as opposed to a push's.
    pub manual: bool,
}

/// Where a pipeline's commit lives.
pub struct Source<'a> {
    /// The project's name as jobs see it.
    pub name: &'a str,
    /// The bare repository jobs clone (`checkout`); readable in their sandbox.
    pub mirror: &'a Path,
    /// The repository `change_in` compares branches in (the mirror itself, on the server).
    pub history: &'a Repo,
}

/// A stored pipeline to run, and everything it runs with.
pub struct Launch<'a> {
    pub settings: &'a Settings,
    pub site: &'a Site,
    pub rt: Handle,
    pub store: &'a Store,
    pub sealer: &'a Sealer,
    pub project_id: &'a str,
    pub source: Source<'a>,
    pub workflow: &'a WorkflowRow,
    pub pipeline: &'a PipelineRow,
    /// Variables for every job besides the storage ones (the server's URL).
    pub env: Vec<(String, String)>,
    /// Variables masked in the logs (a token for a promoted pipeline).
    pub secret_env: Vec<(String, String)>,
    /// Hears each event after it was stored.
    pub observer: &'a dyn Observer,
    /// Where each job runs (`salve_engine::Local`: on this machine; the server also hands jobs
    /// to agents).
    pub executor: &'a dyn Executor,
    /// What an earlier run of this pipeline did, when another server process started it and
    /// was lost (`salve_engine::Fresh`: nothing).
    pub prior: &'a dyn Prior,
}

/// A pipeline that ran.
pub struct Launched {
    pub run: PipelineRun,
    /// The first event that could not be stored, if one could not.
    pub unrecorded: Option<String>,
}

impl Launch<'_> {
    /// Runs `plan` (the pipeline's compiled file) on this thread until it ends or `control`
    /// stops it; every event is stored before the observer hears it.
    pub fn run(&self, plan: &Plan, control: &PipelineControl) -> Result<Launched, LaunchError> {
        let data = &self.settings.data;
        let (cache, artifacts) = (data.cache(self.project_id), data.artifacts(self.project_id));
        for dir in [&cache, &artifacts] {
            create(dir)?;
        }
        let sandbox = self.settings.sandbox()?;
        let ctx = self.context();
        let functions = change_in(self.source.history, self.workflow, &self.pipeline.file);
        let recorder = Recorder::new(self.rt.clone(), self.store, &self.pipeline.id, data.jobs(), self.observer);
        let secrets = StoredSecrets { rt: self.rt.clone(), store: self.store, sealer: self.sealer };
        let mut extra_env = storage_env(&cache, &artifacts);
        extra_env.extend(self.env.iter().cloned());
        let engine = Engine {
            jobs_dir: data.jobs(),
            parallel: self.settings.parallel.max(1),
            sandbox,
            toolbox: self.settings.exe.as_ref().map(|_| data.toolbox()),
            writable: vec![cache, artifacts],
            readable: vec![self.source.mirror.to_owned()],
            run_containers: self.settings.run_containers,
            os_images: self.settings.os_images.clone(),
            extra_env,
            secret_env: self.secret_env.clone(),
            secrets: &secrets,
            functions: &functions,
            observer: &recorder,
            executor: self.executor,
            prior: self.prior,
        };
        let run = engine.run(plan, &ctx, control);
        Ok(Launched { run, unrecorded: recorder.error() })
    }

    /// What the jobs are told about their pipeline (`SEMAPHORE_*`).
    pub fn context(&self) -> Context {
        let (p, w) = (self.pipeline, self.workflow);
        let name = self.source.name;
        let mut git = git_context(self.site.provider, name, self.source.mirror, w);
        (git.commit_author, git.committer) = Repo::new(self.source.mirror).authors(&w.sha);
        Context {
            project_name: name.to_owned(),
            project_id: self.project_id.to_owned(),
            organization_id: self.site.organization_id.clone(),
            organization_url: self.site.organization_url.clone(),
            workflow_id: w.id.clone(),
            workflow_number: u64::try_from(w.number).unwrap_or(0),
            pipeline_id: p.id.clone(),
            artefact_ids: serde_json::from_str(&p.artefact_ids).unwrap_or_default(),
            promoted_by: p.promoted_by.clone(),
            triggered_by: w.triggered_by.clone(),
            triggered_by_manual_run: self.site.manual,
            parameters: params(p).into_iter().collect(),
            git,
        }
    }
}

/// The git side of a workflow (`provider/name` at `mirror`), without its commit's author and
/// committer: those take a `git log`, and only jobs need them.
pub fn git_context(provider: &str, name: &str, mirror: &Path, w: &WorkflowRow) -> GitContext {
    let ref_type = RefKind::parse(&w.ref_type).unwrap_or(RefKind::Branch);
    GitContext {
        provider: provider.to_owned(),
        url: mirror_url(mirror),
        repo_name: name.to_owned(),
        repo_slug: format!("{provider}/{name}"),
        sha: w.sha.clone(),
        ref_type,
        label: w.label.clone(),
        target_branch: (ref_type == RefKind::PullRequest).then(|| w.branch.clone()),
        pr_branch: (ref_type == RefKind::PullRequest).then(|| format!("pull-{}", w.label)),
        pr_sha: None,
        pr_name: None,
        commit_range: String::new(),
        commit_author: String::new(),
        committer: String::new(),
    }
}

/// A pipeline's parameters (promotion parameters, `salve run --param`).
pub fn params(p: &PipelineRow) -> BTreeMap<String, String> {
    serde_json::from_str(&p.params).unwrap_or_default()
}

/// Reads and compiles `file` at `sha`; the error is what a person needs to fix it.
pub fn compile(repo: &Repo, sha: &str, file: &str, params: &BTreeMap<String, String>) -> Result<Plan, LaunchError> {
    let bytes =
        repo.show_file(sha, file).map_err(|_| LaunchError::NoFile { file: file.to_owned(), sha: sha.to_owned() })?;
    let files = AtCommit { repo, rev: sha.to_owned() };
    let analysis = analyze(file, &bytes, &files, params, Mode::Compile);
    match analysis.plan {
        Some(plan) if !analysis.has_errors() => Ok(plan),
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let rendered: Vec<String> = analysis
                .diagnostics
                .iter()
                .filter(|d| d.severity == diag::Severity::Error)
                .map(|d| diag::render(d, (d.file == file).then_some(&*text)))
                .collect();
            Err(LaunchError::Malformed { file: file.to_owned(), problems: rendered.join("\n") })
        }
    }
}

/// `change_in` for a workflow's commit.
pub fn change_in<'r>(repo: &'r Repo, w: &WorkflowRow, file: &str) -> ChangeIn<'r> {
    let build = Build {
        ref_type: w.ref_type.clone(),
        branch: w.branch.clone(),
        sha: w.sha.clone(),
        pipeline_file: file.to_owned(),
        ..Build::default()
    };
    ChangeIn { build, git: repo }
}

const GIT_URL: &str = "SEMAPHORE_GIT_URL";
const CACHE_DIR: &str = "SALVE_CACHE_DIR";
const ARTIFACT_DIR: &str = "SALVE_ARTIFACT_DIR";

/// The variables whose values are places on the machine that launches a project's pipelines
/// from `mirror`: the repository `checkout` clones and the project's cache and artifact
/// folders. A job on an agent gets the agent's own places instead.
pub fn place_env(data: &DataDir, project_id: &str, mirror: &Path) -> Vec<(String, String)> {
    let mut env = vec![mirror_env(mirror)];
    env.extend(storage_dirs_env(&data.cache(project_id), &data.artifacts(project_id)));
    env
}

/// The variable that tells `checkout` which repository to clone.
pub fn mirror_env(mirror: &Path) -> (String, String) {
    (GIT_URL.into(), mirror_url(mirror))
}

fn mirror_url(mirror: &Path) -> String {
    format!("file://{}", mirror.display())
}

/// The variables that send the toolbox's cache and artifacts to a server's storage API (a job
/// on an agent), with a token that opens only that.
pub fn remote_storage_env(server: &str, token: &str) -> Vec<(String, String)> {
    vec![("SALVE_STORAGE_URL".into(), server.to_owned()), ("SALVE_STORAGE_TOKEN".into(), token.to_owned())]
}

/// The variable that names the operator's toolchains folder (`<lang>/<version>/bin`, where
/// `sem-version` looks first), when there is one.
pub fn toolchains_env(dir: Option<&Path>) -> Vec<(String, String)> {
    dir.map(|d| ("SALVE_TOOLCHAINS".to_owned(), d.to_string_lossy().into_owned())).into_iter().collect()
}

/// The variables that tell the toolbox where a project's cache and artifacts live.
fn storage_env(cache_dir: &Path, artifact_dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![("SEMAPHORE_CACHE_BACKEND".into(), "salve".into())];
    env.extend(storage_dirs_env(cache_dir, artifact_dir));
    env
}

fn storage_dirs_env(cache_dir: &Path, artifact_dir: &Path) -> [(String, String); 2] {
    [
        (CACHE_DIR.into(), cache_dir.to_string_lossy().into_owned()),
        (ARTIFACT_DIR.into(), artifact_dir.to_string_lossy().into_owned()),
    ]
}
