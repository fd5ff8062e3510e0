//! Where `cache`, `artifact` and `test-results` keep files: a folder on this machine (a job on
//! the server: `SALVE_CACHE_DIR`, `SALVE_ARTIFACT_DIR`) or the server's storage API (a job on
//! an agent: `SALVE_STORAGE_URL` and `SALVE_STORAGE_TOKEN`, a token of the job's project that
//! lives as long as the job). Paths are relative to the area's root and never leave it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::env;

/// The two areas of a project's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Cache,
    Artifacts,
}

impl Area {
    fn name(self) -> &'static str {
        match self {
            Area::Cache => "cache",
            Area::Artifacts => "artifacts",
        }
    }

    fn folder_variable(self) -> &'static str {
        match self {
            Area::Cache => "SALVE_CACHE_DIR",
            Area::Artifacts => "SALVE_ARTIFACT_DIR",
        }
    }
}

/// An entry of a folder in the storage.
pub use salve_contract::api::StorageEntry as Entry;
/// What a path is in the storage.
pub use salve_contract::api::StorageKind as Kind;
use salve_contract::api::{StorageListing, StorageStat};

pub enum Storage {
    Local(PathBuf),
    Remote(Remote),
}

/// The server's storage API for one area of the job's project.
pub struct Remote {
    url: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Remote {
    fn url(&self, rel: &Path) -> String {
        let path: Vec<String> = rel.components().map(|c| encode(&c.as_os_str().to_string_lossy())).collect();
        if path.is_empty() { self.url.clone() } else { format!("{}/{}", self.url, path.join("/")) }
    }

    /// `GET` of `rel` with `ask` (`""`, `"?stat"` or `"?list"`), refused statuses as errors.
    fn get(&self, rel: &Path, ask: &str) -> Result<reqwest::blocking::Response, String> {
        send(self.http.get(format!("{}{ask}", self.url(rel))).bearer_auth(&self.token))
    }

    fn json<T: serde::de::DeserializeOwned>(&self, rel: &Path, ask: &str) -> Result<T, String> {
        self.get(rel, ask)?.json().map_err(|e| format!("the storage's answer is unreadable: {e}"))
    }

    /// Copies `rel` (a folder when `dir`) to `to` on this machine.
    fn get_to(&self, rel: &Path, to: &Path, dir: bool) -> Result<(), String> {
        if !dir {
            let mut r = self.get(rel, "")?;
            let mut f = std::fs::File::create(to).map_err(|e| format!("cannot write '{}': {e}", to.display()))?;
            return std::io::copy(&mut r, &mut f)
                .map(drop)
                .map_err(|e| format!("cannot write '{}': {e}", to.display()));
        }
        std::fs::create_dir_all(to).map_err(|e| format!("cannot create '{}': {e}", to.display()))?;
        for e in self.json::<StorageListing>(rel, "?list")?.entries {
            self.get_to(&rel.join(&e.name), &to.join(&e.name), e.dir)?;
        }
        Ok(())
    }
}

impl Storage {
    /// Whether the job has storage for `area` (its variables name one).
    pub fn configured(area: Area) -> bool {
        (env("SALVE_STORAGE_URL").is_some() && env("SALVE_STORAGE_TOKEN").is_some())
            || env(area.folder_variable()).is_some()
    }

    /// The job's storage for `area`, from its variables.
    pub fn open(area: Area) -> Result<Storage, String> {
        if let (Some(base), Some(token)) = (env("SALVE_STORAGE_URL"), env("SALVE_STORAGE_TOKEN")) {
            let project = env("SEMAPHORE_PROJECT_ID").ok_or("SEMAPHORE_PROJECT_ID is not set")?;
            let http = reqwest::blocking::Client::builder()
                .timeout(None)
                .build()
                .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
            let url = format!("{}/api/v1/storage/{project}/{}", base.trim_end_matches('/'), area.name());
            return Ok(Storage::Remote(Remote { url, token, http }));
        }
        let root = env(area.folder_variable()).map(PathBuf::from).ok_or_else(|| {
            format!("no {} storage is configured for this job ({} is not set)", area.name(), area.folder_variable())
        })?;
        std::fs::create_dir_all(&root).map_err(|e| format!("cannot open the storage {}: {e}", root.display()))?;
        Ok(Storage::Local(root))
    }

    /// What `rel` is, if it is anything.
    pub fn kind(&self, rel: &Path) -> Result<Option<Kind>, String> {
        match self {
            Storage::Local(root) => {
                Ok(std::fs::metadata(root.join(rel)).ok().map(|m| if m.is_dir() { Kind::Dir } else { Kind::File }))
            }
            Storage::Remote(r) => Ok(r.json::<StorageStat>(rel, "?stat")?.kind),
        }
    }

    /// The entries of folder `rel` (none when it does not exist).
    pub fn list(&self, rel: &Path) -> Result<Vec<Entry>, String> {
        match self {
            Storage::Local(root) => Ok(std::fs::read_dir(root.join(rel))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let meta = e.metadata().ok()?;
                    Some(Entry {
                        name: e.file_name().to_string_lossy().into_owned(),
                        size: meta.len(),
                        dir: meta.is_dir(),
                    })
                })
                .collect()),
            Storage::Remote(r) => Ok(r.json::<StorageListing>(rel, "?list")?.entries),
        }
    }

    /// The bytes of file `rel`, when it exists.
    pub fn read(&self, rel: &Path) -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        self.reader(rel).ok()?.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Reads file `rel` as a stream.
    pub fn reader(&self, rel: &Path) -> Result<Box<dyn Read>, String> {
        match self {
            Storage::Local(root) => std::fs::File::open(root.join(rel))
                .map(|f| Box::new(f) as Box<dyn Read>)
                .map_err(|e| format!("cannot read '{}': {e}", rel.display())),
            Storage::Remote(r) => Ok(Box::new(r.get(rel, "")?)),
        }
    }

    /// Copies `rel` (a file, or a folder with everything in it) to `to` on this machine.
    pub fn get(&self, rel: &Path, to: &Path) -> Result<(), String> {
        match self {
            Storage::Local(root) => copy(&root.join(rel), to),
            Storage::Remote(r) => match self.kind(rel)? {
                Some(kind) => r.get_to(rel, to, kind == Kind::Dir),
                None => Err(format!("'{}' is not in the storage", rel.display())),
            },
        }
    }

    /// Stores `from` on this machine (a file, or a folder with everything in it) as `rel`.
    pub fn put(&self, from: &Path, rel: &Path) -> Result<(), String> {
        let meta = std::fs::metadata(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
        if meta.is_dir() {
            if let Storage::Local(root) = self {
                std::fs::create_dir_all(root.join(rel)).map_err(|e| format!("cannot write the storage: {e}"))?;
            }
            let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
            for entry in entries.flatten() {
                self.put(&entry.path(), &rel.join(entry.file_name()))?;
            }
            return Ok(());
        }
        let file = std::fs::File::open(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
        self.put_reader(file, rel)
    }

    /// Stores what `reader` gives as file `rel` (made whole, then put in place).
    pub fn put_reader(&self, mut reader: impl Read + Send + 'static, rel: &Path) -> Result<(), String> {
        match self {
            Storage::Local(root) => {
                let target = root.join(rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("cannot write the storage: {e}"))?;
                }
                let aside = target.with_file_name(format!(
                    ".{}.{}.tmp",
                    target.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    std::process::id()
                ));
                let mut f = std::fs::File::create(&aside).map_err(|e| format!("cannot write the storage: {e}"))?;
                let copied = std::io::copy(&mut reader, &mut f).map_err(|e| format!("cannot write the storage: {e}"));
                if let Err(e) = copied.and_then(|_| std::fs::rename(&aside, &target).map_err(|e| e.to_string())) {
                    let _ = std::fs::remove_file(&aside);
                    return Err(e);
                }
                Ok(())
            }
            Storage::Remote(r) => {
                let body = reqwest::blocking::Body::new(reader);
                send(r.http.put(r.url(rel)).bearer_auth(&r.token).body(body)).map(drop)
            }
        }
    }

    /// Stores `bytes` as file `rel`.
    pub fn write(&self, rel: &Path, bytes: Vec<u8>) -> Result<(), String> {
        self.put_reader(std::io::Cursor::new(bytes), rel)
    }

    /// Deletes `rel` (a folder with everything in it); false when there was nothing.
    pub fn remove(&self, rel: &Path) -> Result<bool, String> {
        match self {
            Storage::Local(root) => {
                let p = root.join(rel);
                let r = match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
                    Ok(_) => std::fs::remove_file(&p),
                    Err(_) => return Ok(false),
                };
                r.map(|()| true).map_err(|e| format!("cannot delete {}: {e}", p.display()))
            }
            Storage::Remote(r) => {
                let answer = r
                    .http
                    .delete(r.url(rel))
                    .bearer_auth(&r.token)
                    .send()
                    .map_err(|e| format!("cannot reach the storage: {e}"))?;
                match answer.status().as_u16() {
                    200..=299 => Ok(true),
                    404 => Ok(false),
                    s => Err(format!("the storage refused ({s}): {}", answer.text().unwrap_or_default())),
                }
            }
        }
    }
}

fn send(request: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, String> {
    let r = request.send().map_err(|e| format!("cannot reach the storage: {e}"))?;
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status().as_u16();
    Err(format!("the storage refused ({status}): {}", r.text().unwrap_or_default()))
}

/// A path segment for a URL: unreserved characters as they are, the rest percent-encoded.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path inside the storage made safe: relative, no `..`, no empty result.
pub fn inside(path: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("'{path}' leaves the storage: paths may not contain '..'"));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("'{path}' is not a usable storage path"));
    }
    Ok(out)
}

/// Copies a file or a folder on this machine (symlinks are copied as the files they point to).
pub fn copy(from: &Path, to: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| format!("cannot create '{}': {e}", to.display()))?;
        let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read '{}': {e}", from.display()))?;
        for entry in entries.flatten() {
            copy(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ()).map_err(|e| format!("cannot copy '{}': {e}", from.display()))
    }
}
