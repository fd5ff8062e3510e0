//! `cache` (SEMAPHORE.md §4.2) in the project's cache storage (`storage.rs`: the server's folder,
//! or its API from an agent): `<key>.tar.gz` plus `<key>.json` (the path it was stored from,
//! when, how big). Errors are reported and exit 0 unless `CACHE_FAIL_ON_ERROR=true`, as the real
//! tool does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::storage::{Area, Storage};
use crate::{env, now_ms};

#[derive(Serialize, Deserialize)]
struct Meta {
    path: String,
    stored_ms: u64,
    size: u64,
    /// When it was last restored (0: never).
    #[serde(default)]
    accessed_ms: u64,
}

pub(crate) const USAGE: &str = "Usage: cache store [KEY PATH [--cleanup-by SIZE|STORE_TIME|ACCESS_TIME]] | restore [KEY[,KEY...]] | has_key KEY | delete KEY | clear | list [--sort-by SIZE|STORE_TIME|ACCESS_TIME] | is_not_empty | usage
The project's cache holds SALVE_CACHE_SIZE_MB (default 10240) MiB; a store that does not fit
evicts other keys: the oldest stored first (STORE_TIME, the default), the least recently
restored (ACCESS_TIME) or the biggest (SIZE).";

/// The project's cache space when the job does not say (`SALVE_CACHE_SIZE_MB`).
const DEFAULT_SPACE_MB: u64 = 10 * 1024;

/// Which keys go first when space is short, and the order `list --sort-by` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    StoreTime,
    AccessTime,
    Size,
}

impl Order {
    fn parse(text: &str) -> Option<Order> {
        match text.to_ascii_uppercase().replace('-', "_").as_str() {
            "STORE_TIME" => Some(Order::StoreTime),
            "ACCESS_TIME" => Some(Order::AccessTime),
            "SIZE" => Some(Order::Size),
            _ => None,
        }
    }

    /// Sorts `keys` so that the first would be evicted first.
    fn sort(self, keys: &mut [(String, Meta)]) {
        match self {
            Order::StoreTime => keys.sort_by_key(|(k, m)| (m.stored_ms, k.clone())),
            Order::AccessTime => keys.sort_by_key(|(k, m)| (m.accessed_ms.max(m.stored_ms), k.clone())),
            Order::Size => keys.sort_by(|a, b| b.1.size.cmp(&a.1.size).then_with(|| a.0.cmp(&b.0))),
        }
    }
}

fn space() -> u64 {
    env("SALVE_CACHE_SIZE_MB").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(DEFAULT_SPACE_MB) * 1024 * 1024
}

pub fn main(args: &[String]) -> i32 {
    let fail_on_error = env("CACHE_FAIL_ON_ERROR").as_deref() == Some("true");
    let store = match Storage::open(Area::Cache) {
        Ok(s) => Cache { store: s },
        Err(e) => return error(&e, fail_on_error),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["store"] => {
            for (key, path) in detected(true) {
                store.store(&key, &path, Order::StoreTime);
            }
            0
        }
        ["store", key, path] => {
            store.store(key, path, Order::StoreTime);
            0
        }
        ["store", key, path, "--cleanup-by" | "-c", by] => match Order::parse(by) {
            Some(order) => {
                store.store(key, path, order);
                0
            }
            None => {
                println!("Unknown cleanup order '{by}': use SIZE, STORE_TIME or ACCESS_TIME.\n{USAGE}");
                0
            }
        },
        ["restore"] => {
            for (keys, _) in detected(false) {
                store.restore(&keys);
            }
            0
        }
        ["restore", keys] => {
            store.restore(keys);
            0
        }
        ["has_key", key] => {
            let key = normalise(key);
            if store.meta(&key).is_some() {
                println!("Key '{key}' exists in the cache store.");
                0
            } else {
                println!("Key '{key}' doesn't exist in the cache store.");
                1
            }
        }
        ["delete", key] => {
            let key = normalise(key);
            if store.remove(&key) {
                println!("Key '{key}' is deleted.");
            } else {
                println!("Key '{key}' doesn't exist in the cache store.");
            }
            0
        }
        ["clear"] => {
            for (key, _) in store.keys() {
                store.remove(&key);
            }
            println!("Deleted all caches.");
            0
        }
        ["list"] => {
            for (key, meta) in store.keys() {
                println!("{key}\t{}\t{}", meta.size, meta.stored_ms / 1000);
            }
            0
        }
        ["list", "--sort-by" | "-s", by] => {
            let Some(order) = Order::parse(by) else {
                println!("Unknown sort order '{by}': use SIZE, STORE_TIME or ACCESS_TIME.");
                return 0;
            };
            let mut keys = store.keys();
            order.sort(&mut keys);
            // Newest, most recently used or biggest first.
            if order != Order::Size {
                keys.reverse();
            }
            for (key, meta) in keys {
                println!("{key}\t{}\t{}", meta.size, meta.stored_ms / 1000);
            }
            0
        }
        ["is_not_empty"] => i32::from(store.keys().is_empty()),
        ["usage"] => {
            let used = store.used();
            println!("FREE SPACE: {} bytes", space().saturating_sub(used));
            println!("USED SPACE: {used} bytes");
            0
        }
        _ => {
            println!("Incorrect number of arguments!\n{USAGE}");
            0
        }
    }
}

fn error(message: &str, fail: bool) -> i32 {
    eprintln!("error: {message}");
    i32::from(fail)
}

/// `/` in a key becomes `-` (the real tool says so too); keys are also kept to one file name.
fn normalise(key: &str) -> String {
    let out: String = key.chars().map(|c| if c == '/' || c == '\0' { '-' } else { c }).collect();
    if out != key {
        println!("Key '{key}' is normalized to '{out}'.");
    }
    match out.strip_prefix('.') {
        Some(rest) => format!("-{rest}"),
        None => out,
    }
}

struct Cache {
    store: Storage,
}

impl Cache {
    fn archive(key: &str) -> PathBuf {
        PathBuf::from(format!("{key}.tar.gz"))
    }

    fn meta(&self, key: &str) -> Option<Meta> {
        let bytes = self.store.read(Path::new(&format!("{key}.json")))?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The bytes the archives take, from one listing (a key's recorded size is its archive's).
    fn used(&self) -> u64 {
        let listed = self.store.list(Path::new("")).unwrap_or_default();
        listed.iter().filter(|e| !e.dir && e.name.ends_with(".tar.gz")).map(|e| e.size).sum()
    }

    /// Keys with their metadata, most recently stored first.
    fn keys(&self) -> Vec<(String, Meta)> {
        let mut out: Vec<(String, Meta)> = self
            .store
            .list(Path::new(""))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let key = e.name.strip_suffix(".json")?.to_owned();
                let meta = self.meta(&key)?;
                Some((key, meta))
            })
            .collect();
        out.sort_by(|a, b| b.1.stored_ms.cmp(&a.1.stored_ms).then_with(|| a.0.cmp(&b.0)));
        out
    }

    fn remove(&self, key: &str) -> bool {
        let had = self.meta(key).is_some();
        let _ = self.store.remove(Path::new(&format!("{key}.json")));
        let _ = self.store.remove(&Cache::archive(key));
        had
    }

    fn store(&self, key: &str, path: &str, order: Order) {
        let key = normalise(key);
        if !Path::new(path).exists() {
            println!("'{path}' doesn't exist locally.");
            return;
        }
        if self.meta(&key).is_some() {
            println!("Key '{key}' already exists.");
            return;
        }
        // tar's output goes straight into the storage: no copy of the archive on this machine.
        let (dir, rel) = split(path);
        let tar = Command::new("tar")
            .arg("-czf")
            .arg("-")
            .arg("-C")
            .arg(&dir)
            .arg("--")
            .arg(&rel)
            .stdout(Stdio::piped())
            .spawn();
        let mut tar = match tar {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: could not archive '{path}' for key '{key}': {e}");
                return;
            }
        };
        let counted = Counted::default();
        let stored = match tar.stdout.take() {
            Some(out) => self.store.put_reader(counted.wrap(out), &Cache::archive(&key)),
            None => Err("tar gave no output".to_owned()),
        };
        let ok = tar.wait().is_ok_and(|s| s.success());
        if let Err(e) = stored.and_then(|()| if ok { Ok(()) } else { Err("tar failed".to_owned()) }) {
            let _ = self.store.remove(&Cache::archive(&key));
            eprintln!("error: could not archive '{path}' for key '{key}': {e}");
            return;
        }
        let size = counted.get();
        if size > space() {
            let _ = self.store.remove(&Cache::archive(&key));
            eprintln!(
                "error: the archive of '{path}' ({size} bytes) is larger than the cache's space ({} bytes, SALVE_CACHE_SIZE_MB)",
                space()
            );
            return;
        }
        let meta = Meta { path: path.to_owned(), stored_ms: now_ms(), size, accessed_ms: 0 };
        match self.record(&key, &meta) {
            Ok(()) => println!("Uploaded '{path}' ({size} bytes) as '{key}'."),
            Err(e) => eprintln!("error: could not record key '{key}': {e}"),
        }
        self.make_room(&key, order);
    }

    fn record(&self, key: &str, meta: &Meta) -> Result<(), String> {
        let bytes = serde_json::to_vec(meta).map_err(|e| e.to_string())?;
        self.store.write(Path::new(&format!("{key}.json")), bytes)
    }

    /// Evicts other keys, first by `order`, until what is stored fits the cache's space.
    fn make_room(&self, kept: &str, order: Order) {
        let mut used = self.used();
        if used <= space() {
            return;
        }
        // Short of space: only now is every key's record read.
        let mut keys = self.keys();
        keys.retain(|(k, _)| k != kept);
        order.sort(&mut keys);
        for (key, meta) in keys {
            if used <= space() {
                break;
            }
            if self.remove(&key) {
                used = used.saturating_sub(meta.size);
                println!("Deleted '{key}' ({} bytes) to make room.", meta.size);
            }
        }
    }

    fn restore(&self, keys: &str) {
        let stored = self.keys();
        for wanted in keys.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let wanted = normalise(wanted);
            let hit = stored.iter().find(|(k, _)| *k == wanted).or_else(|| {
                let re = regex::Regex::new(&wanted).ok()?;
                stored.iter().find(|(k, _)| re.is_match(k))
            });
            let Some((key, meta)) = hit else {
                println!("MISS: '{wanted}'.");
                continue;
            };
            println!("HIT: '{key}', using key '{key}'.");
            let (dir, _) = split(&meta.path);
            let _ = std::fs::create_dir_all(&dir);
            let ok = match self.store.reader(&Cache::archive(key)) {
                Ok(mut archive) => {
                    let tar =
                        Command::new("tar").arg("-xzf").arg("-").arg("-C").arg(&dir).stdin(Stdio::piped()).spawn();
                    match tar {
                        Ok(mut tar) => {
                            let fed = tar
                                .stdin
                                .take()
                                .is_some_and(|mut input| std::io::copy(&mut archive, &mut input).is_ok());
                            tar.wait().is_ok_and(|s| s.success()) && fed
                        }
                        Err(_) => false,
                    }
                }
                Err(_) => false,
            };
            if ok {
                println!("Restored: '{}'.", meta.path);
                let used = Meta { accessed_ms: now_ms(), path: meta.path.clone(), ..*meta };
                let _ = self.record(key, &used);
            } else {
                eprintln!("error: could not restore key '{key}'");
            }
            return;
        }
    }
}

/// Counts the bytes read through it (the size of an archive streamed into the storage).
#[derive(Default, Clone)]
struct Counted(Arc<AtomicU64>);

impl Counted {
    fn wrap<R: std::io::Read>(&self, inner: R) -> CountedReader<R> {
        CountedReader { inner, count: self.0.clone() }
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountedReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for CountedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A path as (folder to run tar in, entry): absolute paths from `/`, relative ones from here.
fn split(path: &str) -> (PathBuf, String) {
    let p = Path::new(path);
    let name = p.file_name().map_or_else(|| ".".to_owned(), |n| n.to_string_lossy().into_owned());
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    (parent, name)
}

/// Keys and paths from the lockfiles in the current folder (§4.2). `store` uses the exact key;
/// `restore` falls back to the branch and then to master/main.
fn detected(for_store: bool) -> Vec<(String, String)> {
    let branch =
        env("SEMAPHORE_GIT_PR_BRANCH").or_else(|| env("SEMAPHORE_GIT_BRANCH")).unwrap_or_else(|| "master".into());
    let branch = branch.replace('/', "-");
    let home = env("HOME").unwrap_or_default();
    let rules: &[(&str, &[(&str, &str)])] = &[
        (".nvmrc", &[("nvm", "~/.nvm")]),
        ("Gemfile.lock", &[("gems", "vendor/bundle")]),
        ("package-lock.json", &[("node-modules", "node_modules")]),
        ("yarn.lock", &[("yarn-cache", "~/.cache/yarn"), ("node-modules", "node_modules")]),
        ("mix.lock", &[("mix-deps", "deps"), ("mix-build", "_build")]),
        ("requirements.txt", &[("requirements", ".pip_cache")]),
        ("composer.lock", &[("composer", "vendor")]),
        ("pom.xml", &[("maven", ".m2"), ("maven-target", "target")]),
        ("Podfile.lock", &[("pods", "Pods")]),
        ("go.sum", &[("go", "~/go/pkg/mod")]),
    ];
    let mut out = Vec::new();
    for (lockfile, pairs) in rules {
        let Ok(bytes) = std::fs::read(lockfile) else { continue };
        let sum = format!("{:x}", md5::compute(bytes));
        for (prefix, path) in *pairs {
            let path = path.replacen('~', &home, 1);
            if for_store {
                out.push((format!("{prefix}-{branch}-{sum}"), path));
            } else {
                let mut keys = vec![format!("{prefix}-{branch}-{sum}"), format!("{prefix}-{branch}")];
                if branch != "master" {
                    keys.push(format!("{prefix}-master"));
                }
                if branch != "main" {
                    keys.push(format!("{prefix}-main"));
                }
                out.push((keys.join(","), path));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalise;

    /// A key is one file name in the cache folder: `/` becomes `-`, a leading dot is no hidden
    /// file, and a key cannot climb out.
    #[test]
    fn keys_are_one_file_name() {
        assert_eq!(normalise("gems-v1"), "gems-v1");
        assert_eq!(normalise("deps/main/abc"), "deps-main-abc");
        assert_eq!(normalise(".hidden"), "-hidden");
        assert_eq!(normalise("../../etc"), "-.-..-etc");
        assert!(!normalise("a/../../b").contains('/'));
    }
}
