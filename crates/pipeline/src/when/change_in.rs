//! `change_in(paths [, options])` (SEMAPHORE.md §2.6, spc's `pkg/when/changein`): which commit
//! range to look at, how patterns are normalised and matched. The git side (fetching refs,
//! deepening the clone, listing changed files) is behind [`ChangedFiles`], so this stays pure.

use super::value::Value;
use super::{FunctionError, Functions, Params};

/// The build a `change_in` is evaluated for (the `SEMAPHORE_GIT_*` values of spc's environment).
#[derive(Debug, Clone, Default)]
pub struct Build {
    /// `branch`, `tag` or `pull-request`.
    pub ref_type: String,
    /// The branch name; for a pull request, the target branch.
    pub branch: String,
    pub sha: String,
    /// `SEMAPHORE_GIT_COMMIT_RANGE`; may be empty.
    pub commit_range: String,
    /// The source branch of a pull request.
    pub pr_branch: String,
    pub pr_slug: String,
    pub repo_slug: String,
    /// The pipeline file, relative to the repository root (`.semaphore/semaphore.yml`).
    pub pipeline_file: String,
    /// Conditions under `promotions` default to `pipeline_file: ignore`.
    pub in_promotion: bool,
}

/// Lists the files changed in a commit range, fetching `refs` first (branch names the range
/// needs). A reference that cannot be found is an error `Unknown git reference 'X'.`.
pub trait ChangedFiles {
    fn changed_files(&self, range: &str, refs: &[String]) -> Result<Vec<String>, String>;
}

/// The `change_in` function, ready to be registered for an evaluation.
pub struct ChangeIn<'a> {
    pub build: Build,
    pub git: &'a dyn ChangedFiles,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub default_branch: String,
    pub default_range: Option<String>,
    pub branch_range: Option<String>,
    pub on_tags: bool,
    pub track_pipeline_file: bool,
    pub exclude: Vec<String>,
}

impl Functions for ChangeIn<'_> {
    fn arities(&self, name: &str) -> Option<Vec<usize>> {
        (name == "change_in").then(|| vec![1, 2])
    }

    fn call(&self, name: &str, args: &[Value], _params: &Params) -> Result<Value, FunctionError> {
        if name != "change_in" {
            return Err(FunctionError::Message(format!("Function with name '{name}' is not found.")));
        }
        let (paths, options) = parse_args(args, self.build.in_promotion)?;
        if self.build.ref_type == "tag" {
            return Ok(Value::Bool(options.on_tags));
        }
        // Patterns are compiled once, before any git work, so a bad glob is reported at once.
        let workdir = parent_dir(&self.build.pipeline_file);
        let compile_all =
            |list: &[String]| list.iter().map(|p| Pattern::new(p, &workdir)).collect::<Result<Vec<_>, _>>();
        let mut include = compile_all(&paths).map_err(FunctionError::Message)?;
        let exclude = compile_all(&options.exclude).map_err(FunctionError::Message)?;
        if options.track_pipeline_file {
            include.push(
                Pattern::new(&format!("/{}", self.build.pipeline_file), &workdir).map_err(FunctionError::Message)?,
            );
        }
        let (range, refs) = commit_range(&self.build, &options);
        let changed = self.git.changed_files(&range, &refs).map_err(FunctionError::Message)?;
        let hit = changed
            .iter()
            .any(|file| !exclude.iter().any(|p| p.matches(file)) && include.iter().any(|p| p.matches(file)));
        Ok(Value::Bool(hit))
    }
}

/// Checks `change_in`'s arguments and reads them: the paths and the options with their
/// defaults. The pipeline validator calls this too, so both report the same errors.
pub fn parse_args(args: &[Value], in_promotion: bool) -> Result<(Vec<String>, Options), FunctionError> {
    Ok((paths_arg(args.first())?, parse_options(args.get(1), in_promotion)?))
}

fn paths_arg(arg: Option<&Value>) -> Result<Vec<String>, FunctionError> {
    let bad = || FunctionError::Message("uprocessable path parameter in change in expression".into());
    match arg {
        Some(Value::Str(s)) => Ok(vec![s.clone()]),
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// Reads the options map, with spc's defaults.
fn parse_options(arg: Option<&Value>, in_promotion: bool) -> Result<Options, FunctionError> {
    let mut o = Options {
        default_branch: "master".into(),
        default_range: None,
        branch_range: None,
        on_tags: true,
        track_pipeline_file: !in_promotion,
        exclude: Vec::new(),
    };
    let Some(arg) = arg else { return Ok(o) };
    let Value::Map(map) = arg else {
        return Err(FunctionError::Message(
            "the second parameter of change_in must be a map of options, like {default_branch: 'main'}".into(),
        ));
    };
    let wrong = |key: &str| FunctionError::Message(format!("unknown value type {key} in change_in expression"));
    for (key, value) in map {
        match (key.as_str(), value) {
            ("default_branch", Value::Str(s)) => o.default_branch = s.clone(),
            ("default_range", Value::Str(s)) => o.default_range = Some(s.clone()),
            ("branch_range", Value::Str(s)) => o.branch_range = Some(s.clone()),
            ("on_tags", Value::Bool(b)) => o.on_tags = *b,
            ("pipeline_file", Value::Str(s)) if s == "track" => o.track_pipeline_file = true,
            ("pipeline_file", Value::Str(s)) if s == "ignore" => o.track_pipeline_file = false,
            ("exclude", Value::Str(s)) => o.exclude = vec![s.clone()],
            ("exclude", Value::List(items)) => {
                o.exclude = items
                    .iter()
                    .map(|v| match v {
                        Value::Str(s) => Ok(s.clone()),
                        _ => Err(wrong(key)),
                    })
                    .collect::<Result<_, _>>()?;
            }
            ("default_branch" | "default_range" | "branch_range" | "on_tags" | "pipeline_file" | "exclude", _) => {
                return Err(wrong(key));
            }
            (other, _) => {
                return Err(FunctionError::Message(format!(
                    "unknown option '{other}' in change_in expression; known options are default_branch, default_range, branch_range, on_tags, pipeline_file and exclude"
                )));
            }
        }
    }
    Ok(o)
}

/// The commit range to diff and the branches that must be fetched for it.
pub fn commit_range(build: &Build, o: &Options) -> (String, Vec<String>) {
    let default_range = o.default_range.clone().unwrap_or_else(|| {
        if build.commit_range.is_empty() {
            format!("{}...{}", o.default_branch, build.sha)
        } else {
            build.commit_range.clone()
        }
    });
    if build.ref_type == "pull-request" {
        if build.pr_slug != build.repo_slug {
            return (default_range, vec![o.default_branch.clone()]);
        }
        return (
            format!("{}...{}", build.branch, build.pr_branch),
            vec![build.branch.clone(), build.pr_branch.clone()],
        );
    }
    if build.branch == o.default_branch {
        return (default_range, vec![o.default_branch.clone()]);
    }
    let branch_range = o.branch_range.clone().unwrap_or_else(|| "$SEMAPHORE_MERGE_BASE...$SEMAPHORE_GIT_SHA".into());
    if branch_range == "$SEMAPHORE_GIT_COMMIT_RANGE" {
        return (default_range, vec![o.default_branch.clone()]);
    }
    let range = branch_range
        .replace("$SEMAPHORE_MERGE_BASE", &o.default_branch)
        .replace("$SEMAPHORE_GIT_SHA", &build.sha)
        .replace("$SEMAPHORE_GIT_COMMIT_RANGE", &default_range);
    (range, vec![o.default_branch.clone()])
}

/// A normalised `change_in` pattern: a plain prefix, or a doublestar glob when it has a `*`.
enum Pattern {
    Prefix(String),
    Glob(globset::GlobMatcher),
}

impl Pattern {
    fn new(pattern: &str, workdir: &str) -> Result<Pattern, String> {
        let normalized = normalize(pattern, workdir);
        if !normalized.contains('*') {
            return Ok(Pattern::Prefix(normalized));
        }
        let glob = globset::GlobBuilder::new(&normalized)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid change_in pattern '{normalized}': {e}"))?;
        Ok(Pattern::Glob(glob.compile_matcher()))
    }

    /// `changed_file` is repository-relative, with or without a leading `/`.
    fn matches(&self, changed_file: &str) -> bool {
        let file = format!("/{}", changed_file.trim_start_matches('/'));
        match self {
            Pattern::Prefix(prefix) => file.starts_with(prefix.as_str()),
            Pattern::Glob(glob) => glob.is_match(&file),
        }
    }
}

/// Does a changed file (repository-relative, no leading `/`) match a pattern given in a
/// pipeline whose file sits in `workdir`? (The data-driven tests call this directly.)
pub fn matches(pattern: &str, changed_file: &str, workdir: &str) -> Result<bool, String> {
    Ok(Pattern::new(pattern, workdir)?.matches(changed_file))
}

/// Relative patterns are joined to `/<workdir>`; the result is cleaned like Go's `path.Clean`,
/// keeping a trailing `/`.
pub fn normalize(pattern: &str, workdir: &str) -> String {
    let joined =
        if pattern.starts_with('/') { pattern.to_owned() } else { format!("/{}/{pattern}", workdir.trim_matches('/')) };
    let mut parts: Vec<&str> = Vec::new();
    for seg in joined.split('/') {
        match seg {
            "" | "." => (),
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if pattern.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

fn parent_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => path[..i].to_owned(),
        None => String::new(),
    }
}
