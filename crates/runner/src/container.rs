//! Jobs in containers (`agent.containers`), through Podman: the first container's image runs
//! the job's bash session, the others run as its services, all in one network namespace of the
//! job's own (the first service's, which the others join: services answer on 127.0.0.1 and by
//! their names, and no other job shares it). The job's folders are mounted at the paths they have on the host, so its script,
//! workspace, toolbox and records are what they are for any job; the log and command records come
//! from the same bash session. Every container of the job is removed when it ends, whatever
//! ended it.
//!
//! Podman is found on PATH (or at `SALVE_PODMAN`); `SALVE_PODMAN_RUNTIME` picks its OCI runtime
//! (e.g. `runc` where crun cannot run). Containers get no more open files or processes than
//! Salve itself may have, and no new privileges.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A container of a job, as the pipeline names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Its command (a string, split as a shell would, without expansions).
    pub command: Option<String>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    /// Its variables (the container's `env_vars` and its secrets').
    pub env: Vec<(String, String)>,
}

/// Credentials Podman pulls a job's images with (`image_pull_secrets`), from a secret of
/// Semaphore's kinds.
#[derive(Clone, PartialEq, Eq)]
pub struct PullCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for PullCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PullCredential {{ registry: {:?}, username: {:?}, password: [MASKED] }}",
            self.registry, self.username
        )
    }
}

impl PullCredential {
    /// The credential in secret `name` (its variables and files), by its
    /// `DOCKER_CREDENTIAL_TYPE`: `DockerHub` (`DOCKERHUB_USERNAME`, `DOCKERHUB_PASSWORD`),
    /// `GenericDocker` (`DOCKER_URL`, `DOCKER_USERNAME`, `DOCKER_PASSWORD`) or `GCR`
    /// (`GCR_HOSTNAME` and the key file `/tmp/gcr/keyfile.json`).
    pub fn from_secret(
        name: &str,
        env: &[(String, String)],
        files: &[(String, Vec<u8>)],
    ) -> Result<PullCredential, String> {
        let var = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("image pull secret '{name}' has no {k}"))
        };
        let kind = var("DOCKER_CREDENTIAL_TYPE")?;
        match kind.as_str() {
            "DockerHub" => Ok(PullCredential {
                registry: "docker.io".into(),
                username: var("DOCKERHUB_USERNAME")?,
                password: var("DOCKERHUB_PASSWORD")?,
            }),
            "GenericDocker" => Ok(PullCredential {
                registry: var("DOCKER_URL")?,
                username: var("DOCKER_USERNAME")?,
                password: var("DOCKER_PASSWORD")?,
            }),
            "GCR" => {
                let key = files
                    .iter()
                    .find(|(p, _)| p.ends_with("gcr/keyfile.json"))
                    .map(|(_, c)| String::from_utf8_lossy(c).into_owned())
                    .ok_or_else(|| format!("image pull secret '{name}' (GCR) has no file /tmp/gcr/keyfile.json"))?;
                Ok(PullCredential { registry: var("GCR_HOSTNAME")?, username: "_json_key".into(), password: key })
            }
            other => Err(format!(
                "image pull secret '{name}': DOCKER_CREDENTIAL_TYPE '{other}' is not one Salve can use \
                 (DockerHub, GenericDocker, GCR; for ECR, log Podman in on the machine)"
            )),
        }
    }
}

/// A Podman auth file (`--authfile`) with `creds`.
pub fn auth_file(creds: &[PullCredential]) -> String {
    use base64::Engine as _;
    let auths: serde_json::Map<String, serde_json::Value> = creds
        .iter()
        .map(|c| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
            (
                c.registry.trim_start_matches("https://").trim_end_matches('/').to_owned(),
                serde_json::json!({"auth": auth}),
            )
        })
        .collect();
    serde_json::json!({ "auths": auths }).to_string()
}

/// The Podman this machine runs containers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Podman {
    pub program: PathBuf,
    /// The OCI runtime (`--runtime`), when not Podman's default.
    pub runtime: Option<String>,
}

impl Podman {
    /// `SALVE_PODMAN`, else `podman` on PATH.
    pub fn find() -> Option<Podman> {
        let runtime = std::env::var("SALVE_PODMAN_RUNTIME").ok().filter(|r| !r.trim().is_empty());
        if let Some(p) = std::env::var_os("SALVE_PODMAN").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            return p.is_file().then_some(Podman { program: p, runtime });
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("podman"))
            .find(|p| p.is_file())
            .map(|program| Podman { program, runtime })
    }

    /// Whether `image` is on this machine.
    pub fn has_image(&self, image: &str) -> bool {
        !image.starts_with('-') && self.run(&["image", "exists", image]).is_ok()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.program);
        // Podman's own warnings stay out of the job's log; its errors, and what makes a command
        // fail, are still said. (conmon refuses the levels above `error` with a warning of its
        // own in every job's log.)
        c.arg("--log-level=error");
        if let Some(r) = &self.runtime {
            c.args(["--runtime", r]);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs podman with `args`; its standard output, or what it said on failure.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cmd().args(args).output().map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(err.trim().lines().last().unwrap_or("").trim_start_matches("Error: ").to_owned())
        }
    }
}

/// Splits a container's `command` as a shell splits words: whitespace, single and double quotes,
/// backslashes; nothing is expanded.
pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A job's containers: its services started, all removed when dropped.
#[derive(Debug)]
pub struct Pod {
    podman: Podman,
    /// The container whose network namespace the others join (the first service), if any.
    network_of: Option<String>,
    /// Outbound access (Podman's default network) or loopback alone.
    network: bool,
    /// Every container the job may have left.
    containers: Vec<String>,
    /// The job's memory (bytes) and process limits, each container's.
    limits: (Option<u64>, Option<u64>),
}

/// What the main container mounts and runs.
pub struct Main<'a> {
    pub container: &'a Container,
    /// Folders mounted read-write, at the same paths.
    pub writable: &'a [PathBuf],
    /// Folders (or files) mounted read-only, at the same paths.
    pub readable: &'a [PathBuf],
    pub workdir: &'a Path,
    /// The base environment (no secrets: the script exports the job's variables).
    pub env: &'a [(String, String)],
    pub argv: &'a [OsString],
}

/// A name Podman accepts, from a job id and a container's name.
fn podman_name(s: &str) -> String {
    let n: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect();
    n.trim_start_matches(['-', '.', '_']).chars().take(120).collect()
}

/// A service container's name as a host name in the pod.
fn host_name(s: &str) -> Option<String> {
    let h: String = s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let h = h.trim_matches('-').to_owned();
    (!h.is_empty() && h.len() <= 63).then_some(h)
}

/// `--ulimit` values: open files as this process may have them (Podman's default of a million
/// fails where Salve's own limit is lower), processes at Podman's default of 32768 unless this
/// process may have fewer.
fn ulimits() -> Vec<String> {
    use rustix::process::{Resource, getrlimit};
    let mut out = Vec::new();
    for (name, r, cap) in [("nofile", Resource::Nofile, u64::MAX), ("nproc", Resource::Nproc, 32768)] {
        let l = getrlimit(r);
        let max = l.maximum.unwrap_or(u64::MAX).min(cap);
        let cur = l.current.unwrap_or(u64::MAX).min(max);
        if max != u64::MAX {
            out.push(format!("{name}={cur}:{max}"));
        }
    }
    out
}

impl Pod {
    /// Makes sure every image is here (pulling one that is not), and starts the services in a
    /// network namespace of the job's own (`network`). Errors say what is missing and how to
    /// get it.
    /// `creds` log the pulls in (through an auth file in `private`, removed after).
    pub fn start(
        podman: &Podman,
        job_id: &str,
        containers: &[Container],
        network: bool,
        limits: (Option<u64>, Option<u64>),
        creds: &[PullCredential],
        private: &Path,
    ) -> Result<Pod, String> {
        for c in containers {
            if c.image.trim().is_empty() || c.image.starts_with('-') {
                return Err(format!("container '{}' names no image", c.name));
            }
            if !podman.has_image(&c.image) {
                let authfile = private.join("podman-auth.json");
                let mut args = vec!["pull".to_owned(), "--quiet".to_owned()];
                if !creds.is_empty() {
                    write_private(&authfile, auth_file(creds).as_bytes())
                        .map_err(|e| format!("cannot write the registry credentials: {e}"))?;
                    args.extend(["--authfile".to_owned(), authfile.to_string_lossy().into_owned()]);
                }
                args.extend(["--".to_owned(), c.image.clone()]);
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let pulled = podman.run(&refs);
                let _ = std::fs::remove_file(&authfile);
                pulled.map_err(|e| {
                    format!(
                        "image '{}' (container '{}') is not on this machine and could not be pulled ({e}): \
                         build or load it here (podman build -t {} ., podman load)",
                        c.image, c.name, c.image
                    )
                })?;
            }
        }
        let name = podman_name(&format!("salve-{job_id}"));
        let names: Vec<String> = containers.iter().map(|c| podman_name(&format!("{name}-{}", c.name))).collect();
        let mut pod = Pod { podman: podman.clone(), network_of: None, network, containers: names, limits };
        // Containers left by a crash of an earlier run of the same job are not this job's.
        pod.remove();
        let hosts: Vec<String> =
            containers.iter().skip(1).filter_map(|c| host_name(&c.name)).map(|h| format!("{h}:127.0.0.1")).collect();
        for (i, c) in containers.iter().enumerate().skip(1) {
            let mut args: Vec<String> =
                vec!["run".into(), "--detach".into(), "--name".into(), pod.containers[i].clone()];
            args.extend(pod.network_args(&hosts));
            args.extend(pod.common_args());
            // Values the pipeline gives are joined to their flag: never a flag of their own.
            for (k, v) in &c.env {
                args.push(format!("--env={k}={v}"));
            }
            if let Some(u) = &c.user {
                args.push(format!("--user={u}"));
            }
            if let Some(e) = &c.entrypoint {
                args.push(format!("--entrypoint={e}"));
            }
            args.push("--".into());
            args.push(c.image.clone());
            args.extend(c.command.as_deref().map(split_words).unwrap_or_default());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            // The OCI runtime now and then fails to set a container up while other namespaces
            // are made at once: the half-made container goes, and it is started once more.
            let started = podman.run(&refs).or_else(|e| {
                if !e.contains("OCI") {
                    return Err(e);
                }
                let _ = podman.run(&["rm", "--force", "--ignore", "--time", "0", &pod.containers[i]]);
                podman.run(&refs)
            });
            started.map_err(|e| format!("service container '{}' ({}) did not start: {e}", c.name, c.image))?;
            if pod.network_of.is_none() {
                pod.network_of = Some(pod.containers[i].clone());
            }
        }
        Ok(pod)
    }

    /// The network a container of the job joins: the first service's, else its own.
    fn network_args(&self, hosts: &[String]) -> Vec<String> {
        if let Some(first) = &self.network_of {
            return vec!["--network".into(), format!("container:{first}")];
        }
        let mut args = if self.network { Vec::new() } else { vec!["--network".into(), "none".into()] };
        for h in hosts {
            args.extend(["--add-host".into(), h.clone()]);
        }
        args
    }

    /// The PATH `image` sets for its processes, if it sets one.
    pub fn image_path(&self, image: &str) -> Option<String> {
        let format = "{{range .Config.Env}}{{println .}}{{end}}";
        let env = self.podman.run(&["image", "inspect", "--format", format, "--", image]).ok()?;
        env.lines().find_map(|l| l.strip_prefix("PATH=")).map(str::to_owned)
    }

    /// The command that runs the job's bash session in the main container.
    pub fn main_command(&self, m: &Main<'_>) -> Command {
        let mut cmd = self.podman.cmd();
        // `--interactive`: the job's variables and files come on standard input.
        cmd.args(["run", "--rm", "--interactive", "--name"]).arg(&self.containers[0]);
        cmd.args(self.network_args(&[]));
        cmd.args(self.common_args());
        cmd.arg("--workdir").arg(m.workdir);
        let mut volume = |path: &Path, mode: &str| {
            let p = path.to_string_lossy();
            // A path with a colon cannot be said in `--volume`; such a folder is not mounted.
            if !p.contains(':') {
                cmd.arg("--volume").arg(format!("{p}:{p}:{mode}"));
            }
        };
        for w in m.writable {
            volume(w, "rw");
        }
        for r in m.readable {
            volume(r, "ro");
        }
        for (k, v) in m.env.iter().chain(&m.container.env) {
            cmd.arg(format!("--env={k}={v}"));
        }
        if let Some(u) = &m.container.user {
            cmd.arg(format!("--user={u}"));
        }
        // The job's bash session, not the image's entrypoint, is the main container's process.
        cmd.args(["--entrypoint", ""]).arg("--").arg(&m.container.image).args(m.argv);
        cmd
    }

    /// Removes every container of the job, running or not.
    fn remove(&self) {
        let mut args = vec!["rm", "--force", "--ignore", "--time", "0"];
        args.extend(self.containers.iter().map(String::as_str));
        let _ = self.podman.run(&args);
    }
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

impl Pod {
    /// What every container of the job runs with: no new privileges, no more open files or
    /// processes than Salve may have, the job's memory and process limits (a service is no way
    /// around them).
    fn common_args(&self) -> Vec<String> {
        let mut args = vec!["--security-opt".into(), "no-new-privileges".into()];
        for u in ulimits() {
            args.extend(["--ulimit".into(), u]);
        }
        if let Some(b) = self.limits.0 {
            args.push(format!("--memory={b}"));
        }
        if let Some(n) = self.limits.1 {
            args.push(format!("--pids-limit={n}"));
        }
        args
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_as_a_shell_would_without_expanding() {
        assert_eq!(split_words("postgres -c 'fsync=off' -c \"a b\""), ["postgres", "-c", "fsync=off", "-c", "a b"]);
        assert_eq!(split_words("  echo $HOME\\ x  "), ["echo", "$HOME x"]);
        assert_eq!(split_words("''"), [""]);
        assert!(split_words("   ").is_empty());
    }

    #[test]
    fn pull_secrets_of_semaphores_kinds() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let hub =
            env(&[("DOCKER_CREDENTIAL_TYPE", "DockerHub"), ("DOCKERHUB_USERNAME", "u"), ("DOCKERHUB_PASSWORD", "p")]);
        let c = PullCredential::from_secret("hub", &hub, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.registry.as_str(), c.username.as_str(), c.password.as_str()), ("docker.io", "u", "p"));
        assert!(!format!("{c:?}").contains("\"p\""), "the password never prints");
        let generic = env(&[
            ("DOCKER_CREDENTIAL_TYPE", "GenericDocker"),
            ("DOCKER_URL", "registry.example.com"),
            ("DOCKER_USERNAME", "me"),
            ("DOCKER_PASSWORD", "s3cret"),
        ]);
        let g = PullCredential::from_secret("g", &generic, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            auth_file(&[g]),
            r#"{"auths":{"registry.example.com":{"auth":"bWU6czNjcmV0"}}}"#,
            "me:s3cret in base64, as Podman's auth file has it"
        );
        let gcr = env(&[("DOCKER_CREDENTIAL_TYPE", "GCR"), ("GCR_HOSTNAME", "gcr.io")]);
        let key = vec![("/tmp/gcr/keyfile.json".to_owned(), b"{\"k\":1}".to_vec())];
        let c = PullCredential::from_secret("gcr", &gcr, &key).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("_json_key", "{\"k\":1}"));
        let e = PullCredential::from_secret("x", &env(&[("DOCKER_CREDENTIAL_TYPE", "AWS_ECR")]), &[]).err();
        assert!(e.is_some_and(|e| e.contains("'AWS_ECR' is not one Salve can use")));
        let e = PullCredential::from_secret("x", &env(&[("DOCKER_CREDENTIAL_TYPE", "DockerHub")]), &[]).err();
        assert!(e.is_some_and(|e| e.contains("has no DOCKERHUB_USERNAME")));
    }

    #[test]
    fn every_container_of_a_job_gets_its_limits() {
        let podman = Podman { program: PathBuf::from("/bin/false"), runtime: None };
        let pod = Pod {
            podman,
            network_of: None,
            network: true,
            containers: vec!["salve-j-main".into(), "salve-j-db".into()],
            limits: (Some(512 * 1024 * 1024), Some(100)),
        };
        let args = pod.common_args();
        for want in ["no-new-privileges", "--memory=536870912", "--pids-limit=100"] {
            assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
        }
        // Services are started with the same arguments as the main container.
        let main = Container {
            name: "main".into(),
            image: "img".into(),
            command: None,
            entrypoint: None,
            user: Some("--privileged".into()),
            env: Vec::new(),
        };
        let argv: Vec<OsString> = vec!["bash".into()];
        let m =
            Main { container: &main, writable: &[], readable: &[], workdir: Path::new("/w"), env: &[], argv: &argv };
        let cmd = pod.main_command(&m);
        let all: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(all.iter().any(|a| a == "--pids-limit=100"), "{all:?}");
        // A hostile `user` is the value of --user, never a flag of its own.
        assert!(all.iter().any(|a| a == "--user=--privileged"), "{all:?}");
        assert!(!all.iter().any(|a| a == "--privileged"), "{all:?}");
    }

    #[test]
    fn names_podman_accepts() {
        assert_eq!(podman_name("salve-1f/x y"), "salve-1f-x-y");
        assert_eq!(podman_name("--rm"), "rm");
        assert_eq!(host_name("My DB"), Some("my-db".into()));
        assert_eq!(host_name("!!"), None);
    }
}
