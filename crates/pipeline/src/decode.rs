//! YAML tree → [`Pipeline`], checking the v1.0 schema as it goes. Every problem is reported
//! and decoding carries on, so one run shows them all. Messages start with Semaphore's own
//! text where it has one (so tools that match on it keep working) and end with the fix.

use crate::diag::{Pos, Sink, YPath};
use crate::model::*;
use crate::yaml::{Kind, Node};

/// Reads the files a pipeline refers to (`task_file`, `commands_file`).
pub trait FileSource {
    /// Reads a file by its repository-relative path (no leading `/`).
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// A source with no files: every reference is reported as unavailable.
pub struct NoFiles;

impl FileSource for NoFiles {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!("no file source to read '{path}' from"))
    }
}

pub(crate) struct Decoder<'a> {
    pub sink: &'a mut Sink,
    pub files: &'a dyn FileSource,
    /// Directory of the pipeline file, repository-relative (`.semaphore`).
    pub dir: String,
    /// Errors found in files the pipeline includes, with their own file names.
    pub extra: Vec<crate::diag::Diagnostic>,
    /// In lint mode a referenced file that cannot be read is a warning (the file may only
    /// exist at the commit that runs); when compiling it is an error.
    pub strict: bool,
}

type Entries = [(String, Pos, Node)];

fn article(what: &str) -> &'static str {
    if what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

impl Decoder<'_> {
    fn err(&mut self, pos: Pos, path: &YPath, msg: impl Into<String>) {
        self.sink.error(pos, path, msg);
    }

    fn type_error(&mut self, node: &Node, path: &YPath, expected: &str, fix: &str) {
        let got = node.type_name();
        let shown = match node.kind {
            Kind::Seq(_) | Kind::Map(_) | Kind::Null => String::new(),
            _ => format!(" ({})", node.describe()),
        };
        let key = path.last_key();
        let subject = match path.segments().last() {
            Some(last) if last.parse::<usize>().is_ok() => format!("each entry of `{key}`"),
            _ => format!("`{key}`"),
        };
        let mut msg = format!("Type mismatch. Expected {expected} but got {got}{shown}. {subject} must be {fix}.");
        if expected == "String" && matches!(node.kind, Kind::Map(_)) {
            msg.push_str(" YAML reads `key: value` as a mapping: if this text contains \": \", quote it whole, e.g. - 'echo \"a: b\"'.");
        }
        self.err(node.pos, path, msg);
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed`.
    fn object<'n>(&mut self, node: &'n Node, path: &YPath, what: &str, allowed: &[&str]) -> Option<&'n Entries> {
        let Kind::Map(entries) = &node.kind else {
            let fix = format!("a mapping with the keys of {} {what} ({})", article(what), allowed.join(", "));
            self.type_error(node, path, "Object", &fix);
            return None;
        };
        for (key, pos, _) in entries {
            if !allowed.contains(&key.as_str()) {
                let hint = closest(key, allowed).map(|c| format!(" Did you mean `{c}`?")).unwrap_or_default();
                self.err(
                    *pos,
                    &path.key(key),
                    format!(
                        "Schema does not allow additional properties: `{key}` is not a key of {} {what}.{hint} The allowed keys are: {}.",
                        article(what),
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(entries)
    }

    fn require(&mut self, node: &Node, entries: &Entries, path: &YPath, keys: &[&str], what: &str) -> bool {
        let missing: Vec<&str> = keys.iter().copied().filter(|k| !has(entries, k)).collect();
        match missing.as_slice() {
            [] => true,
            [one] => {
                self.err(
                    node.pos,
                    path,
                    format!("Required property {one} was not present. Add `{one}` to this {what}."),
                );
                false
            }
            many => {
                self.err(
                    node.pos,
                    path,
                    format!("Required properties {} were not present. Add them to this {what}.", many.join(", ")),
                );
                false
            }
        }
    }

    /// Exactly one of `keys` must be present.
    fn one_of(&mut self, node: &Node, entries: &Entries, path: &YPath, keys: &[&str], what: &str) -> bool {
        let present: Vec<&str> = keys.iter().copied().filter(|k| has(entries, k)).collect();
        match present.len() {
            1 => true,
            0 => {
                let list = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ");
                self.err(
                    node.pos,
                    path,
                    format!(
                        "Expected exactly one of the schemata to match, but none of them did. This {what} needs {list}."
                    ),
                );
                false
            }
            _ => {
                let list = present.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ");
                self.err(
                    node.pos,
                    path,
                    format!("Expected exactly one of the schemata to match, but more than one did: this {what} has both {list}; keep only one."),
                );
                false
            }
        }
    }

    fn string(&mut self, node: &Node, path: &YPath, fix: &str) -> Option<String> {
        match &node.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                let fix = match node.kind {
                    Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                        format!("{fix}; quote the value to make it a string")
                    }
                    _ => fix.to_owned(),
                };
                self.type_error(node, path, "String", &fix);
                None
            }
        }
    }

    fn nonempty_string(&mut self, node: &Node, path: &YPath, fix: &str) -> Option<String> {
        let s = self.string(node, path, fix)?;
        if s.is_empty() {
            self.err(
                node.pos,
                path,
                format!(
                    "Expected value to have a minimum length of 1 but was 0. `{}` must not be empty.",
                    path.last_key()
                ),
            );
            return None;
        }
        Some(s)
    }

    fn enum_string(&mut self, node: &Node, path: &YPath, allowed: &[&str]) -> Option<String> {
        let s = self.string(node, path, &format!("one of: {}", allowed.join(", ")))?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.err(
                node.pos,
                path,
                format!(
                    "Value is not allowed in enum: {s:?}. `{}` must be one of: {}.",
                    path.last_key(),
                    allowed.join(", ")
                ),
            );
            None
        }
    }

    fn integer(&mut self, node: &Node, path: &YPath, min: i64, max: Option<i64>) -> Option<i64> {
        let Kind::Int(n) = node.kind else {
            let fix = match max {
                Some(max) => format!("a whole number from {min} to {max}"),
                None => format!("a whole number of at least {min}"),
            };
            self.type_error(node, path, "Integer", &fix);
            return None;
        };
        if n < min {
            self.err(node.pos, path, format!("Expected the value to be >= {min}; `{}` is {n}.", path.last_key()));
            return None;
        }
        if let Some(max) = max.filter(|max| n > *max) {
            self.err(node.pos, path, format!("Expected the value to be <= {max}; `{}` is {n}.", path.last_key()));
            return None;
        }
        Some(n)
    }

    fn boolean(&mut self, node: &Node, path: &YPath) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.type_error(node, path, "Boolean", "true or false");
                None
            }
        }
    }

    /// An array; `min`/`max` item counts are checked.
    fn array<'n>(
        &mut self,
        node: &'n Node,
        path: &YPath,
        fix: &str,
        min: usize,
        max: Option<usize>,
    ) -> Option<&'n [Node]> {
        let Kind::Seq(items) = &node.kind else {
            self.type_error(node, path, "Array", fix);
            return None;
        };
        if items.len() < min {
            self.err(
                node.pos,
                path,
                format!(
                    "Expected a minimum of {min} items but got {}. `{}` must be {fix}.",
                    items.len(),
                    path.last_key()
                ),
            );
        }
        if let Some(max) = max.filter(|m| items.len() > *m) {
            self.err(
                node.pos,
                path,
                format!(
                    "Expected a maximum of {max} items but got {}. Split `{}` so it has at most {max}.",
                    items.len(),
                    path.last_key()
                ),
            );
        }
        Some(items)
    }

    fn string_list(&mut self, node: &Node, path: &YPath, fix: &str) -> Vec<String> {
        let Some(items) = self.array(node, path, fix, 0, None) else { return Vec::new() };
        items.iter().enumerate().filter_map(|(i, n)| self.string(n, &path.idx(i), "a string")).collect()
    }

    // ---------------------------------------------------------------- the document

    pub fn pipeline(&mut self, root: &Node) -> Option<Pipeline> {
        let path = YPath::root();
        let Kind::Map(entries) = &root.kind else {
            self.err(
                root.pos,
                &path,
                format!(
                    "{{:expected_map, {}}}: a pipeline file must be a YAML mapping with `version`, `agent` and `blocks`, but this one is {}",
                    root.describe(),
                    match root.kind {
                        Kind::Seq(_) => "a list".to_owned(),
                        _ => format!("the value {}", root.describe()),
                    }
                ),
            );
            return None;
        };
        let version = match get(entries, "version") {
            Some(n @ Node { kind: Kind::Str(v), .. }) => {
                if v != "v1.0" {
                    self.err(
                        n.pos,
                        &path.key("version"),
                        format!("Version: '{v}' is not supported! Use `version: v1.0`."),
                    );
                }
                v.clone()
            }
            other => {
                let pos = other.map_or(root.pos, |n| n.pos);
                self.err(
                    pos,
                    &path.key("version"),
                    "Required property 'version' missing or not string. Start the file with `version: v1.0` (quote it if your editor turns it into a number).",
                );
                String::new()
            }
        };
        self.object(
            root,
            &path,
            "pipeline",
            &[
                "version",
                "name",
                "agent",
                "blocks",
                "after_pipeline",
                "promotions",
                "execution_time_limit",
                "global_job_config",
                "fail_fast",
                "auto_cancel",
                "queue",
                "partial_rerun",
            ],
        );
        self.require(root, entries, &path, &["agent", "blocks"], "pipeline");
        let name = get(entries, "name").and_then(|n| self.string(n, &path.key("name"), "the pipeline's name"));
        let agent = get(entries, "agent").and_then(|n| self.agent(n, &path.key("agent"))).unwrap_or_default();
        let mut blocks = Vec::new();
        if let Some(node) = get(entries, "blocks") {
            let p = path.key("blocks");
            if let Some(items) = self.array(node, &p, "a list of blocks, each with a `task`", 1, Some(300)) {
                for (i, b) in items.iter().enumerate() {
                    if let Some(block) = self.block(b, &p.idx(i)) {
                        blocks.push(block);
                    }
                }
            }
        }
        let after_pipeline =
            get(entries, "after_pipeline").and_then(|n| self.after_pipeline(n, &path.key("after_pipeline")));
        let promotions =
            get(entries, "promotions").map(|n| self.promotions(n, &path.key("promotions"))).unwrap_or_default();
        let execution_time_limit =
            get(entries, "execution_time_limit").and_then(|n| self.time_limit(n, &path.key("execution_time_limit")));
        let global_job_config = get(entries, "global_job_config")
            .and_then(|n| self.global_job_config(n, &path.key("global_job_config")))
            .unwrap_or_default();
        let fail_fast = get(entries, "fail_fast").and_then(|n| self.fail_fast(n, &path.key("fail_fast")));
        let auto_cancel = get(entries, "auto_cancel").and_then(|n| self.auto_cancel(n, &path.key("auto_cancel")));
        let queue = get(entries, "queue").map(|n| self.queue(n, &path.key("queue"))).unwrap_or_default();
        let partial_rerun = get(entries, "partial_rerun")
            .and_then(|n| self.enum_string(n, &path.key("partial_rerun"), &["jobs", "block"]));
        Some(Pipeline {
            version,
            name,
            agent,
            blocks,
            after_pipeline,
            promotions,
            execution_time_limit,
            global_job_config,
            fail_fast,
            auto_cancel,
            queue,
            partial_rerun,
        })
    }

    fn agent(&mut self, node: &Node, path: &YPath) -> Option<Agent> {
        let entries = self.object(node, path, "agent", &["machine", "containers", "image_pull_secrets"])?;
        self.require(node, entries, path, &["machine"], "agent (e.g. `machine: {type: e1-standard-2}`)");
        let mut agent = Agent::default();
        if let Some(m) = get(entries, "machine") {
            let mp = path.key("machine");
            if let Some(me) = self.object(m, &mp, "machine", &["type", "os_image"]) {
                if self.require(m, me, &mp, &["type"], "machine (e.g. `type: e1-standard-2`)")
                    && let Some(t) = get(me, "type")
                {
                    agent.machine_type = self
                        .nonempty_string(t, &mp.key("type"), "the machine type, e.g. e1-standard-2")
                        .unwrap_or_default();
                }
                agent.os_image =
                    get(me, "os_image").and_then(|n| self.string(n, &mp.key("os_image"), "an OS image name"));
            }
        }
        if let Some(c) = get(entries, "containers") {
            let cp = path.key("containers");
            if let Some(items) = self.array(c, &cp, "a list of containers", 0, None) {
                for (i, item) in items.iter().enumerate() {
                    if let Some(container) = self.container(item, &cp.idx(i)) {
                        agent.containers.push(container);
                    }
                }
            }
        }
        if let Some(s) = get(entries, "image_pull_secrets") {
            let sp = path.key("image_pull_secrets");
            if let Some(items) = self.array(s, &sp, "a list of `{name: SECRET}`", 0, None) {
                for (i, item) in items.iter().enumerate() {
                    let ip = sp.idx(i);
                    if let Some(e) = self.object(item, &ip, "image pull secret", &["name"])
                        && self.require(item, e, &ip, &["name"], "image pull secret")
                        && let Some(n) =
                            get(e, "name").and_then(|n| self.string(n, &ip.key("name"), "the secret's name"))
                    {
                        agent.image_pull_secrets.push(n);
                    }
                }
            }
        }
        Some(agent)
    }

    fn container(&mut self, node: &Node, path: &YPath) -> Option<Container> {
        let e = self.object(
            node,
            path,
            "container",
            &["name", "image", "command", "entrypoint", "user", "env_vars", "secrets"],
        )?;
        self.require(node, e, path, &["name", "image"], "container");
        let s = |key: &str, me: &mut Self| get(e, key).and_then(|n| me.string(n, &path.key(key), "a string"));
        let name = s("name", self).unwrap_or_default();
        let image = s("image", self).unwrap_or_default();
        let command = s("command", self);
        let entrypoint = s("entrypoint", self);
        let user = s("user", self);
        let env_vars = get(e, "env_vars").map(|n| self.env_vars(n, &path.key("env_vars"))).unwrap_or_default();
        let secrets = get(e, "secrets").map(|n| self.secrets(n, &path.key("secrets"))).unwrap_or_default();
        Some(Container {
            name,
            image,
            command,
            entrypoint,
            user,
            env_vars,
            secrets: secrets.into_iter().map(|s| s.name).collect(),
        })
    }

    fn env_vars(&mut self, node: &Node, path: &YPath) -> Vec<EnvVar> {
        let Some(items) = self.array(node, path, "a list of `{name: NAME, value: \"VALUE\"}`", 0, Some(10_000)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(item, &ip, "environment variable", &["name", "value"]) else { continue };
            if !self.require(item, e, &ip, &["name", "value"], "environment variable (`name: X` and `value: \"...\"`)")
            {
                continue;
            }
            let name = get(e, "name").and_then(|n| self.string(n, &ip.key("name"), "the variable's name"));
            let value = get(e, "value").and_then(|n| self.string(n, &ip.key("value"), "a string"));
            if let (Some(name), Some(value)) = (name, value) {
                if !valid_env_name(&name) {
                    self.sink.warning(
                        item.pos,
                        &ip.key("name"),
                        format!("`{name}` is not a valid shell variable name (letters, digits and `_`, not starting with a digit); the job cannot read it"),
                    );
                }
                out.push(EnvVar { name, value });
            }
        }
        out
    }

    fn secrets(&mut self, node: &Node, path: &YPath) -> Vec<SecretRef> {
        let Some(items) = self.array(node, path, "a list of `{name: SECRET}`", 0, None) else { return Vec::new() };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(item, &ip, "secret", &["name", "env_var_names", "config_file_paths"]) else {
                continue;
            };
            if !self.require(item, e, &ip, &["name"], "secret") {
                continue;
            }
            let Some(name) = get(e, "name").and_then(|n| self.string(n, &ip.key("name"), "the secret's name")) else {
                continue;
            };
            let env_var_names = get(e, "env_var_names")
                .map(|n| self.string_list(n, &ip.key("env_var_names"), "a list of names"))
                .unwrap_or_default();
            let config_file_paths = get(e, "config_file_paths")
                .map(|n| self.string_list(n, &ip.key("config_file_paths"), "a list of paths"))
                .unwrap_or_default();
            out.push(SecretRef { name, env_var_names, config_file_paths });
        }
        out
    }

    pub fn condition(&mut self, node: &Node, path: &YPath) -> Option<Condition> {
        let e = self.object(node, path, "condition", &["when"])?;
        if !self.require(node, e, path, &["when"], "condition (`when: \"branch = 'main'\"`)") {
            return None;
        }
        let w = get(e, "when")?;
        self.when_value(w, &path.key("when"))
    }

    fn when_value(&mut self, w: &Node, path: &YPath) -> Option<Condition> {
        let when = match &w.kind {
            Kind::Bool(b) => When::Bool(*b),
            Kind::Str(s) if s.is_empty() => {
                self.err(w.pos, path, "Expected value to have a minimum length of 1 but was 0. Write a condition such as \"branch = 'main'\", or true/false.");
                return None;
            }
            Kind::Str(s) => When::Expr(s.clone()),
            _ => {
                self.type_error(
                    w,
                    path,
                    "String or Boolean",
                    "a condition string such as \"branch = 'main'\", or true/false",
                );
                return None;
            }
        };
        Some(Condition { when, pos: w.pos, path: path.clone() })
    }

    fn time_limit(&mut self, node: &Node, path: &YPath) -> Option<TimeLimit> {
        let e = self.object(node, path, "execution_time_limit", &["minutes", "hours"])?;
        if !self.one_of(node, e, path, &["minutes", "hours"], "execution_time_limit") {
            return None;
        }
        if let Some(m) = get(e, "minutes") {
            let n = self.integer(m, &path.key("minutes"), 1, None)?;
            return Some(TimeLimit { minutes: u64::try_from(n).unwrap_or(0), pos: node.pos });
        }
        let h = get(e, "hours")?;
        let n = self.integer(h, &path.key("hours"), 1, None)?;
        Some(TimeLimit { minutes: u64::try_from(n).unwrap_or(0).saturating_mul(60), pos: node.pos })
    }

    fn block(&mut self, node: &Node, path: &YPath) -> Option<Block> {
        let e = self.object(
            node,
            path,
            "block",
            &[
                "name",
                "dependencies",
                "execution_time_limit",
                "filters",
                "skip",
                "run",
                "task",
                "task_file",
                "partial_rerun",
            ],
        )?;
        let name = get(e, "name").and_then(|n| self.nonempty_string(n, &path.key("name"), "the block's name"));
        for pair in [["filters", "skip"], ["filters", "run"], ["run", "skip"]] {
            if has(e, pair[0]) && has(e, pair[1]) {
                self.err(
                    node.pos,
                    path,
                    format!("Expected schema not to match but it did: a block may have only one of `skip`, `run` and `filters`, and this one has `{}` and `{}`; keep one.", pair[0], pair[1]),
                );
            }
        }
        let dependencies = get(e, "dependencies").map(|n| {
            let p = path.key("dependencies");
            match self.array(n, &p, "a list of block names", 0, None) {
                Some(items) => items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| self.string(d, &p.idx(i), "a block name").map(|s| (s, d.pos)))
                    .collect(),
                None => Vec::new(),
            }
        });
        let skip = get(e, "skip").and_then(|n| self.condition(n, &path.key("skip")));
        let run = get(e, "run").and_then(|n| self.condition(n, &path.key("run")));
        let filters = get(e, "filters").map(|n| self.filters(n, &path.key("filters"))).unwrap_or_default();
        let execution_time_limit =
            get(e, "execution_time_limit").and_then(|n| self.time_limit(n, &path.key("execution_time_limit")));
        let partial_rerun =
            get(e, "partial_rerun").and_then(|n| self.enum_string(n, &path.key("partial_rerun"), &["jobs", "block"]));
        let task = if self.one_of(node, e, path, &["task", "task_file"], "block") {
            match (get(e, "task"), get(e, "task_file")) {
                (Some(t), _) => self.task(t, &path.key("task")),
                (None, Some(f)) => self.task_file(f, &path.key("task_file")),
                (None, None) => None,
            }
        } else {
            None
        };
        Some(Block {
            name,
            pos: node.pos,
            dependencies,
            task: task.unwrap_or_default(),
            skip,
            run,
            filters,
            execution_time_limit,
            partial_rerun,
        })
    }

    fn filters(&mut self, node: &Node, path: &YPath) -> Vec<Filter> {
        let Some(items) = self.array(node, path, "a list of `{label: L, action: skip|execute}`", 0, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(item, &ip, "filter", &["label", "label_pattern", "action"]) else { continue };
            if !self.one_of(item, e, &ip, &["label", "label_pattern"], "filter") {
                continue;
            }
            let label = get(e, "label").and_then(|n| self.nonempty_string(n, &ip.key("label"), "a label"));
            let label_pattern = get(e, "label_pattern")
                .and_then(|n| self.nonempty_string(n, &ip.key("label_pattern"), "a regular expression"));
            let action = get(e, "action").and_then(|n| self.enum_string(n, &ip.key("action"), &["skip", "execute"]));
            out.push(Filter { label, label_pattern, execute: action.as_deref() == Some("execute") });
        }
        out
    }

    /// Reads a repository file a pipeline names, relative to the pipeline's directory or, with a
    /// leading `/`, to the repository root.
    fn read_referenced(&mut self, node: &Node, path: &YPath, what: &str) -> Option<(String, Vec<u8>)> {
        let rel = self.nonempty_string(node, path, &format!("the path of the {what}"))?;
        let Some(full) = resolve_path(&self.dir, &rel) else {
            self.err(
                node.pos,
                path,
                format!("the {what} at location '{rel}' points outside the repository; use a path inside it"),
            );
            return None;
        };
        match self.files.read(&full) {
            Ok(bytes) => Some((full, bytes)),
            Err(e) => {
                let msg = format!(
                    "the {what} at location '{full}' is not available: {e}. Check the path; it is relative to '{}' unless it starts with '/'.",
                    if self.dir.is_empty() { "/" } else { &self.dir }
                );
                if self.strict {
                    self.err(node.pos, path, msg);
                } else {
                    self.sink.warning(
                        node.pos,
                        path,
                        format!("{msg} The pipeline fails as malformed if the file is missing when it runs."),
                    );
                }
                None
            }
        }
    }

    fn task_file(&mut self, node: &Node, path: &YPath) -> Option<Task> {
        let (full, bytes) = self.read_referenced(node, path, "task_file")?;
        let mut sub = Sink::new(&full);
        let root = crate::yaml::load(&bytes, &mut sub);
        let task = root.and_then(|r| {
            let mut d = Decoder {
                sink: &mut sub,
                files: self.files,
                dir: parent_dir(&full),
                extra: Vec::new(),
                strict: self.strict,
            };
            let t = d.task(&r, &YPath::root());
            let extra = std::mem::take(&mut d.extra);
            self.extra.extend(extra);
            t
        });
        let had_errors = sub.diags.iter().any(|d| d.is_error());
        if had_errors {
            self.err(node.pos, path, format!("the task_file '{full}' is malformed; see the errors reported in it"));
        }
        self.extra.extend(sub.diags);
        task.filter(|_| !had_errors)
    }

    fn task(&mut self, node: &Node, path: &YPath) -> Option<Task> {
        let e = self.object(
            node,
            path,
            "task",
            &["jobs", "agent", "boosters", "prologue", "secrets", "env_vars", "epilogue", "fail_fast"],
        )?;
        if !has(e, "jobs") && !has(e, "boosters") {
            self.err(node.pos, path, "Expected any of the schemata to match but none did. A task needs `jobs`: a list of jobs, each with `commands`.");
        }
        let mut task = Task { path: path.clone(), pos: node.pos, ..Task::default() };
        if let Some(j) = get(e, "jobs") {
            let jp = path.key("jobs");
            if let Some(items) = self.array(j, &jp, "a list of jobs, each with `commands`", 1, Some(50)) {
                for (i, item) in items.iter().enumerate() {
                    if let Some(job) = self.job(item, &jp.idx(i)) {
                        task.jobs.push(job);
                    }
                }
            }
        }
        if let Some(b) = get(e, "boosters") {
            let bp = path.key("boosters");
            if let Some(items) = self.array(b, &bp, "a list of boosters", 0, None) {
                for (i, item) in items.iter().enumerate() {
                    let ip = bp.idx(i);
                    let Some(be) = self.object(item, &ip, "booster", &["name", "type", "job_count"]) else { continue };
                    if !self.require(item, be, &ip, &["type", "job_count"], "booster") {
                        continue;
                    }
                    let name = get(be, "name").and_then(|n| self.string(n, &ip.key("name"), "the booster's name"));
                    let kind =
                        get(be, "type").and_then(|n| self.enum_string(n, &ip.key("type"), &["rspec", "cucumber"]));
                    let count = get(be, "job_count").and_then(|n| self.integer(n, &ip.key("job_count"), 1, Some(50)));
                    if let (Some(kind), Some(job_count)) = (kind, count) {
                        task.boosters.push(Booster { name, kind, job_count });
                    }
                }
            }
        }
        task.agent = get(e, "agent").and_then(|n| self.agent(n, &path.key("agent")));
        task.prologue =
            get(e, "prologue").map(|n| self.cmd_type(n, &path.key("prologue"), "prologue")).unwrap_or_default();
        task.epilogue = get(e, "epilogue").map(|n| self.epilogue(n, &path.key("epilogue"))).unwrap_or_default();
        task.secrets = get(e, "secrets").map(|n| self.secrets(n, &path.key("secrets"))).unwrap_or_default();
        task.env_vars = get(e, "env_vars").map(|n| self.env_vars(n, &path.key("env_vars"))).unwrap_or_default();
        task.fail_fast = get(e, "fail_fast").and_then(|n| self.fail_fast(n, &path.key("fail_fast")));
        Some(task)
    }

    /// `{commands: [...]}` or `{commands_file: path}`.
    fn cmd_type(&mut self, node: &Node, path: &YPath, what: &str) -> Vec<String> {
        let Some(e) = self.object(node, path, what, &["commands", "commands_file"]) else { return Vec::new() };
        if !self.one_of(node, e, path, &["commands", "commands_file"], what) {
            return Vec::new();
        }
        self.commands(e, path)
    }

    fn commands(&mut self, e: &Entries, path: &YPath) -> Vec<String> {
        if let Some(c) = get(e, "commands") {
            return self.string_list(c, &path.key("commands"), "a list of shell commands");
        }
        if let Some(f) = get(e, "commands_file") {
            let fp = path.key("commands_file");
            if let Some((full, bytes)) = self.read_referenced(f, &fp, "commands_file") {
                let text = String::from_utf8_lossy(&bytes);
                let cmds: Vec<String> =
                    text.lines().map(|l| l.trim_end().to_owned()).filter(|l| !l.is_empty()).collect();
                if cmds.is_empty() {
                    self.err(
                        f.pos,
                        &fp,
                        format!("the commands_file at location '{full}' is empty; put one command per line in it"),
                    );
                }
                return cmds;
            }
        }
        Vec::new()
    }

    fn epilogue(&mut self, node: &Node, path: &YPath) -> Epilogue {
        let Kind::Map(entries) = &node.kind else {
            self.type_error(
                node,
                path,
                "Object",
                "a mapping with `always`, `on_pass` or `on_fail`, each holding `commands`",
            );
            return Epilogue::default();
        };
        let old = has(entries, "commands") || has(entries, "commands_file");
        let new = ["always", "on_pass", "on_fail"].iter().any(|k| has(entries, k));
        if old && new {
            self.err(
                node.pos,
                path,
                "Expected exactly one of the schemata to match, but none of them did. An epilogue is either `commands` (the old form) or `always`/`on_pass`/`on_fail`, not both; move the commands under `always`.",
            );
            return Epilogue::default();
        }
        if old {
            return Epilogue { always: self.cmd_type(node, path, "epilogue"), ..Epilogue::default() };
        }
        let Some(e) = self.object(node, path, "epilogue", &["always", "on_pass", "on_fail"]) else {
            return Epilogue::default();
        };
        if !new {
            self.err(node.pos, path, "Expected exactly one of the schemata to match, but none of them did. An epilogue needs `always`, `on_pass` or `on_fail`.");
        }
        let part =
            |key: &str, me: &mut Self| get(e, key).map(|n| me.cmd_type(n, &path.key(key), key)).unwrap_or_default();
        Epilogue { always: part("always", self), on_pass: part("on_pass", self), on_fail: part("on_fail", self) }
    }

    fn job(&mut self, node: &Node, path: &YPath) -> Option<Job> {
        let e = self.object(
            node,
            path,
            "job",
            &[
                "name",
                "commands",
                "commands_file",
                "priority",
                "parallelism",
                "matrix",
                "env_vars",
                "execution_time_limit",
            ],
        )?;
        let name = get(e, "name").and_then(|n| self.nonempty_string(n, &path.key("name"), "the job's name"));
        if has(e, "matrix") && has(e, "parallelism") {
            self.err(node.pos, path, "Expected schema not to match but it did: a job may have `matrix` or `parallelism`, not both; keep one.");
        }
        let commands = if self.one_of(node, e, path, &["commands", "commands_file"], "job") {
            self.commands(e, path)
        } else {
            Vec::new()
        };
        let priority = get(e, "priority").map(|n| self.priority(n, &path.key("priority"))).unwrap_or_default();
        let parallelism = get(e, "parallelism").and_then(|n| {
            let p = path.key("parallelism");
            match &n.kind {
                Kind::Str(s) => Some(Parallelism::Template(s.clone())),
                Kind::Int(_) => self.integer(n, &p, 1, Some(50)).map(Parallelism::Count),
                _ => {
                    self.type_error(n, &p, "Integer", "a whole number from 1 to 50");
                    None
                }
            }
        });
        let matrix = get(e, "matrix").map(|n| self.matrix(n, &path.key("matrix"))).unwrap_or_default();
        let env_vars = get(e, "env_vars").map(|n| self.env_vars(n, &path.key("env_vars"))).unwrap_or_default();
        let execution_time_limit =
            get(e, "execution_time_limit").and_then(|n| self.time_limit(n, &path.key("execution_time_limit")));
        Some(Job {
            name,
            pos: node.pos,
            path: path.clone(),
            commands,
            priority,
            parallelism,
            matrix,
            env_vars,
            execution_time_limit,
        })
    }

    fn matrix(&mut self, node: &Node, path: &YPath) -> Vec<MatrixAxis> {
        let Some(items) = self.array(node, path, "a list of `{env_var: NAME, values: [...]}`", 0, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(item, &ip, "matrix axis", &["env_var", "values"]) else { continue };
            if !self.require(item, e, &ip, &["env_var", "values"], "matrix axis (`env_var: NAME` and `values: [...]`)")
            {
                continue;
            }
            let env_var =
                get(e, "env_var").and_then(|n| self.nonempty_string(n, &ip.key("env_var"), "a variable name"));
            let values = get(e, "values").and_then(|n| {
                let vp = ip.key("values");
                match &n.kind {
                    Kind::Str(s) => Some(MatrixValues::Template(s.clone())),
                    _ => {
                        let items = self.array(n, &vp, "a non-empty list of strings", 1, None)?;
                        let vals: Vec<String> = items
                            .iter()
                            .enumerate()
                            .filter_map(|(j, v)| self.string(v, &vp.idx(j), "a string"))
                            .collect();
                        (vals.len() == items.len() && !vals.is_empty()).then_some(MatrixValues::List(vals))
                    }
                }
            });
            if let (Some(env_var), Some(values)) = (env_var, values) {
                out.push(MatrixAxis { env_var, values, pos: item.pos });
            }
        }
        out
    }

    fn priority(&mut self, node: &Node, path: &YPath) -> Vec<PriorityRule> {
        let Some(items) = self.array(node, path, "a list of `{value: N, when: CONDITION}`", 0, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(item, &ip, "priority rule", &["value", "when"]) else { continue };
            if !self.require(item, e, &ip, &["value", "when"], "priority rule") {
                continue;
            }
            let value = get(e, "value").and_then(|n| self.integer(n, &ip.key("value"), 0, Some(100)));
            let when = get(e, "when").and_then(|n| self.when_value(n, &ip.key("when")));
            if let (Some(value), Some(when)) = (value, when) {
                out.push(PriorityRule { value, when });
            }
        }
        out
    }

    fn global_job_config(&mut self, node: &Node, path: &YPath) -> Option<GlobalJobConfig> {
        let keys = ["prologue", "secrets", "env_vars", "epilogue", "priority"];
        let e = self.object(node, path, "global_job_config", &keys)?;
        if !keys.iter().any(|k| has(e, k)) {
            self.err(node.pos, path, "Expected any of the schemata to match but none did. global_job_config needs at least one of: prologue, secrets, env_vars, epilogue, priority.");
        }
        Some(GlobalJobConfig {
            prologue: get(e, "prologue")
                .map(|n| self.cmd_type(n, &path.key("prologue"), "prologue"))
                .unwrap_or_default(),
            epilogue: get(e, "epilogue").map(|n| self.epilogue(n, &path.key("epilogue"))).unwrap_or_default(),
            secrets: get(e, "secrets").map(|n| self.secrets(n, &path.key("secrets"))).unwrap_or_default(),
            env_vars: get(e, "env_vars").map(|n| self.env_vars(n, &path.key("env_vars"))).unwrap_or_default(),
            priority: get(e, "priority").map(|n| self.priority(n, &path.key("priority"))).unwrap_or_default(),
        })
    }

    fn fail_fast(&mut self, node: &Node, path: &YPath) -> Option<FailFast> {
        let e = self.object(node, path, "fail_fast", &["stop", "cancel"])?;
        if !has(e, "stop") && !has(e, "cancel") {
            self.err(node.pos, path, "Expected any of the schemata to match but none did. fail_fast needs `stop: {when: ...}` or `cancel: {when: ...}`.");
        }
        Some(FailFast {
            stop: get(e, "stop").and_then(|n| self.condition(n, &path.key("stop"))),
            cancel: get(e, "cancel").and_then(|n| self.condition(n, &path.key("cancel"))),
        })
    }

    fn auto_cancel(&mut self, node: &Node, path: &YPath) -> Option<AutoCancel> {
        let e = self.object(node, path, "auto_cancel", &["queued", "running"])?;
        if !has(e, "queued") && !has(e, "running") {
            self.err(node.pos, path, "Expected any of the schemata to match but none did. auto_cancel needs `running: {when: ...}` or `queued: {when: ...}`.");
        }
        Some(AutoCancel {
            running: get(e, "running").and_then(|n| self.condition(n, &path.key("running"))),
            queued: get(e, "queued").and_then(|n| self.condition(n, &path.key("queued"))),
        })
    }

    fn queue(&mut self, node: &Node, path: &YPath) -> Vec<QueueRule> {
        match &node.kind {
            Kind::Seq(_) => {
                let Some(items) = self.array(node, path, "a queue definition or a non-empty list of them", 1, None)
                else {
                    return Vec::new();
                };
                items.iter().enumerate().filter_map(|(i, n)| self.queue_map(n, &path.idx(i))).collect()
            }
            _ => self.queue_map(node, path).into_iter().collect(),
        }
    }

    fn queue_map(&mut self, node: &Node, path: &YPath) -> Option<QueueRule> {
        let e = self.object(node, path, "queue", &["name", "scope", "processing", "when"])?;
        if !has(e, "name") && !has(e, "processing") {
            self.err(
                node.pos,
                path,
                "Expected any of the schemata to match but none did. A queue needs `name` or `processing`.",
            );
        }
        Some(QueueRule {
            name: get(e, "name").and_then(|n| self.nonempty_string(n, &path.key("name"), "the queue's name")),
            scope: get(e, "scope").and_then(|n| self.enum_string(n, &path.key("scope"), &["project", "organization"])),
            processing: get(e, "processing")
                .and_then(|n| self.enum_string(n, &path.key("processing"), &["serialized", "parallel"])),
            when: get(e, "when").and_then(|n| self.when_value(n, &path.key("when"))),
        })
    }

    fn after_pipeline(&mut self, node: &Node, path: &YPath) -> Option<Task> {
        let e = self.object(node, path, "after_pipeline", &["task", "task_file"])?;
        if !self.one_of(node, e, path, &["task", "task_file"], "after_pipeline") {
            return None;
        }
        match (get(e, "task"), get(e, "task_file")) {
            (Some(t), _) => self.task(t, &path.key("task")),
            (None, Some(f)) => self.task_file(f, &path.key("task_file")),
            (None, None) => None,
        }
    }

    fn promotions(&mut self, node: &Node, path: &YPath) -> Vec<Promotion> {
        let Some(items) = self.array(node, path, "a list of promotions, each with `name` and `pipeline_file`", 1, None)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(
                item,
                &ip,
                "promotion",
                &["name", "pipeline_file", "deployment_target", "auto_promote_on", "auto_promote", "parameters"],
            ) else {
                continue;
            };
            self.require(item, e, &ip, &["name", "pipeline_file"], "promotion");
            let name = get(e, "name").and_then(|n| self.nonempty_string(n, &ip.key("name"), "the promotion's name"));
            let pipeline_file = get(e, "pipeline_file")
                .and_then(|n| self.string(n, &ip.key("pipeline_file"), "the path of the pipeline to start"));
            let deployment_target = get(e, "deployment_target")
                .and_then(|n| self.nonempty_string(n, &ip.key("deployment_target"), "a deployment target name"));
            let auto_promote = get(e, "auto_promote").and_then(|n| self.condition(n, &ip.key("auto_promote")));
            let auto_promote_on = get(e, "auto_promote_on")
                .map(|n| self.auto_promote_on(n, &ip.key("auto_promote_on")))
                .unwrap_or_default();
            let parameters =
                get(e, "parameters").map(|n| self.parameters(n, &ip.key("parameters"))).unwrap_or_default();
            if let (Some(name), Some(pipeline_file)) = (name, pipeline_file) {
                out.push(Promotion {
                    name,
                    pipeline_file,
                    auto_promote,
                    auto_promote_on,
                    parameters,
                    deployment_target,
                });
            }
        }
        out
    }

    fn auto_promote_on(&mut self, node: &Node, path: &YPath) -> Vec<AutoPromoteOn> {
        let Some(items) = self.array(node, path, "a list of `{result: passed, branch: [...]}`", 0, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if !items.is_empty() {
            self.sink.warning(node.pos, path, "`auto_promote_on` is deprecated; use `auto_promote: {when: \"result = 'passed' and branch = 'main'\"}`");
        }
        for (i, item) in items.iter().enumerate() {
            let ip = path.idx(i);
            let Some(e) = self.object(
                item,
                &ip,
                "auto_promote_on entry",
                &["result", "result_reason", "branch", "labels", "label_patterns"],
            ) else {
                continue;
            };
            if !self.require(item, e, &ip, &["result"], "auto_promote_on entry") {
                continue;
            }
            let filters: Vec<&str> = ["branch", "labels", "label_patterns"].into_iter().filter(|k| has(e, k)).collect();
            if filters.len() > 1 {
                self.err(item.pos, &ip, format!("Expected schema not to match but it did: use only one of `branch`, `labels` and `label_patterns`, not {}.", filters.join(" and ")));
            }
            let Some(result) = get(e, "result")
                .and_then(|n| self.string(n, &ip.key("result"), "a result: passed, failed, stopped or canceled"))
            else {
                continue;
            };
            let result_reason =
                get(e, "result_reason").and_then(|n| self.string(n, &ip.key("result_reason"), "a result reason"));
            let list = |k: &str, me: &mut Self| {
                get(e, k).map(|n| me.string_list(n, &ip.key(k), "a list of strings")).unwrap_or_default()
            };
            let branch = list("branch", self);
            let labels = list("labels", self);
            let label_patterns = list("label_patterns", self);
            out.push(AutoPromoteOn { result, result_reason, branch, labels, label_patterns });
        }
        out
    }

    fn parameters(&mut self, node: &Node, path: &YPath) -> Vec<Parameter> {
        let Some(e) = self.object(node, path, "parameters", &["env_vars"]) else { return Vec::new() };
        if !self.require(node, e, path, &["env_vars"], "parameters section") {
            return Vec::new();
        }
        let Some(list) = get(e, "env_vars") else { return Vec::new() };
        let lp = path.key("env_vars");
        let Some(items) = self.array(list, &lp, "a list of parameters, each with a `name`", 0, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = lp.idx(i);
            let Some(pe) =
                self.object(item, &ip, "parameter", &["name", "options", "required", "default_value", "description"])
            else {
                continue;
            };
            if !self.require(item, pe, &ip, &["name"], "parameter") {
                continue;
            }
            let Some(name) = get(pe, "name").and_then(|n| self.string(n, &ip.key("name"), "the parameter's name"))
            else {
                continue;
            };
            let options = get(pe, "options")
                .map(|n| self.string_list(n, &ip.key("options"), "a list of strings"))
                .unwrap_or_default();
            let required = get(pe, "required").and_then(|n| self.boolean(n, &ip.key("required"))).unwrap_or(true);
            let default_value =
                get(pe, "default_value").and_then(|n| self.string(n, &ip.key("default_value"), "a string"));
            let description = get(pe, "description").and_then(|n| self.string(n, &ip.key("description"), "a string"));
            if let Some(d) = default_value.as_ref().filter(|d| !options.is_empty() && !options.contains(d)) {
                self.sink.warning(
                    item.pos,
                    &ip.key("default_value"),
                    format!("the default value {d:?} is not one of the parameter's options"),
                );
            }
            out.push(Parameter { name, description, required, options, default_value });
        }
        out
    }
}

fn get<'n>(entries: &'n Entries, key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v)
}

fn has(entries: &Entries, key: &str) -> bool {
    entries.iter().any(|(k, _, _)| k == key)
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves a path written in a pipeline against the pipeline's directory; `None` when it
/// climbs out of the repository.
pub fn resolve_path(dir: &str, rel: &str) -> Option<String> {
    let joined = if let Some(abs) = rel.strip_prefix('/') { abs.to_owned() } else { format!("{dir}/{rel}") };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => (),
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

pub fn parent_dir(path: &str) -> String {
    path.rfind('/').map_or(String::new(), |i| path[..i].to_owned())
}

/// The allowed key nearest to a misspelt one, if any is near enough to suggest.
fn closest<'k>(key: &str, allowed: &[&'k str]) -> Option<&'k str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
