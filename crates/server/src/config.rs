//! The server's settings. Each comes from the first of: a command-line flag, an environment
//! variable (`SALVE_…`), `salve.toml`, the default. The CLI resolves flags and variables (clap's
//! `env`); [`FileConfig`] is what `salve.toml` may say.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen, `HOST:PORT` (port 0: any free port).
    pub listen: String,
    pub data_dir: PathBuf,
    /// `sqlite://…` (default: `salve.db` in the data folder) or `postgres://…`.
    pub database_url: String,
    /// The URL people and jobs reach the server at (default: `http://` + the listen address).
    pub public_url: Option<String>,
    /// Jobs this server runs itself at once (0: none; every job then goes to agents).
    pub jobs: usize,
    /// The agent type that runs jobs of machine types that are not agent types (`s1-…`):
    /// none keeps them on this server.
    pub agent_pool: Option<String>,
    /// An agent job whose agent is silent this long is lost (run again once, then failed).
    pub agent_lost_after_seconds: u64,
    /// The operator's toolchains (`<lang>/<version>/bin`), where `sem-version` looks first.
    pub toolchains_dir: Option<PathBuf>,
    /// Run jobs in bubblewrap (never switch off on a shared machine).
    pub sandbox: bool,
    /// Let jobs reach the network.
    pub network: bool,
    /// The largest request body the API accepts, in bytes (webhooks take at most 25 MB, pushes
    /// `max_push_bytes`).
    pub max_body_bytes: usize,
    /// The largest git push taken, in bytes.
    pub max_push_bytes: u64,
    /// Each job's memory limit, in bytes (a job may ask for less with `SALVE_MEMORY_MB`).
    pub job_memory_bytes: Option<u64>,
    /// Each job's process limit (a job may ask for fewer with `SALVE_MAX_PROCESSES`).
    pub job_max_processes: Option<u64>,
    /// The `salve` binary: linked into jobs as the toolbox and run as the sandbox's jail.
    pub exe: Option<PathBuf>,
    /// `Host` values `/mcp` answers besides loopback, the listen address and the public URL's.
    pub mcp_allowed_hosts: Vec<String>,
    /// List the MCP tools that start workflows.
    pub mcp_write_tools: bool,
    /// `agent.machine.os_image` names run in these images (through Podman), as Semaphore's
    /// machines run their images: `ubuntu2204 = "localhost/ubuntu:22.04"`.
    pub os_images: std::collections::BTreeMap<String, String>,
}

/// The keys `salve.toml` may hold. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub jobs: Option<usize>,
    /// The agent type (`s1-NAME`) that runs jobs of every other machine type.
    pub agent_pool: Option<String>,
    /// Seconds an agent may be silent before its jobs are lost [default: 30].
    pub agent_lost_after_seconds: Option<u64>,
    /// Toolchains `sem-version` finds first: `<lang>/<version>/bin` (go/1.22.4/bin).
    pub toolchains_dir: Option<PathBuf>,
    pub sandbox: Option<bool>,
    pub network: Option<bool>,
    pub max_body_mb: Option<usize>,
    pub max_push_mb: Option<u64>,
    /// Each job's memory limit in MiB (0: none) [default: three quarters of the machine's].
    pub job_memory_mb: Option<u64>,
    /// Each job's process limit (0: none) [default: 4096].
    pub job_max_processes: Option<u64>,
    /// `Host` values `/mcp` answers besides loopback, the listen address and the public URL's.
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// List the MCP tools that start workflows (off by default).
    pub mcp_write_tools: Option<bool>,
    /// `os_image` name → the image its jobs run in (`[os_images] ubuntu2204 = "…"`).
    pub os_images: Option<std::collections::BTreeMap<String, String>>,
    /// A repository's heal settings (`salve heal` reads them; the server ignores them), so one
    /// salve.toml can hold both.
    pub heal: Option<toml::Value>,
}

impl FileConfig {
    /// Reads `path`; a missing file is an empty configuration only when `required` is false.
    pub fn read(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|source| ConfigError::Invalid { path: path.to_owned(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(FileConfig::default()),
            Err(source) => Err(ConfigError::Unreadable { path: path.to_owned(), source }),
        }
    }
}

/// Why `salve.toml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// Not TOML, or a setting of the wrong type or name (the message says which and where).
    #[error("{}: {source}", path.display())]
    Invalid { path: PathBuf, source: toml::de::Error },
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The host part of `host:port` or of a URL (`[::1]` without its brackets).
fn host_of(authority: &str) -> String {
    let rest = authority.split_once("://").map_or(authority, |(_, r)| r);
    let rest = rest.split(['/', '?', '#']).next().unwrap_or("");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Some(v6) = rest.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_owned();
    }
    rest.split(':').next().unwrap_or("").to_owned()
}

impl Config {
    /// The URL people and jobs reach the server at: the public URL, else the listen address.
    pub fn base_url(&self) -> String {
        let url = self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen));
        url.trim_end_matches('/').to_owned()
    }

    /// The `Host` values `/mcp` answers: loopback, the listen address, the public URL's host and
    /// `mcp_allowed_hosts`.
    pub fn mcp_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(str::to_owned).to_vec();
        hosts.push(host_of(&self.listen));
        if let Some(url) = &self.public_url {
            hosts.push(host_of(url));
        }
        hosts.extend(self.mcp_allowed_hosts.iter().cloned());
        hosts.retain(|h| !h.is_empty());
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// A configuration with every default, its data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            listen: DEFAULT_LISTEN.into(),
            database_url: default_database(&data_dir),
            data_dir,
            public_url: None,
            jobs: std::thread::available_parallelism().map_or(2, usize::from),
            agent_pool: None,
            agent_lost_after_seconds: salve_contract::api::AGENT_LOST_AFTER_SECONDS,
            toolchains_dir: None,
            sandbox: true,
            network: true,
            max_body_bytes: 4 * 1024 * 1024,
            max_push_bytes: 2 * 1024 * 1024 * 1024,
            job_memory_bytes: default_job_memory(),
            job_max_processes: Some(DEFAULT_JOB_PROCESSES),
            exe: None,
            mcp_allowed_hosts: Vec::new(),
            mcp_write_tools: false,
            os_images: Default::default(),
        }
    }
}

/// Processes one job may have at once, by default: a fork bomb stops there.
pub const DEFAULT_JOB_PROCESSES: u64 = 4096;

/// Three quarters of the machine's memory: one runaway job cannot take the host down with it.
pub fn default_job_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024 / 4 * 3)
}

pub fn default_database(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("salve.db").display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_images_map_machine_names_to_images() {
        let text = "[os_images]\nubuntu2204 = \"localhost/ubuntu:22.04\"\n";
        let file: FileConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let images = file.os_images.unwrap_or_default();
        assert_eq!(images.get("ubuntu2204").map(String::as_str), Some("localhost/ubuntu:22.04"));
        let wrong: Result<FileConfig, _> = toml::from_str("os_images = \"ubuntu\"\n");
        assert!(wrong.is_err(), "a table, not a string");
    }
}
