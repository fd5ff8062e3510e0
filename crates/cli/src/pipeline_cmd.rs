//! `salve lint` and `salve compile`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use salve_git::files::WorkTree;
use salve_pipeline::{Analysis, Mode, analyze, diag};

use crate::{err, out};

#[derive(clap::Args)]
pub struct LintArgs {
    /// Pipeline files (default: .semaphore/semaphore.yml).
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

#[derive(clap::Args)]
pub struct CompileArgs {
    /// The pipeline file.
    file: PathBuf,
    /// A parameter, exported in every job and used by `${{ parameters.NAME }}` templates.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

/// The repository a file belongs to and the file's path inside it.
fn locate(file: &Path) -> Result<(PathBuf, String), String> {
    let abs = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if !abs.is_file() {
        return Err(format!(
            "{}: no such file; give the path of a pipeline file (default .semaphore/semaphore.yml)",
            file.display()
        ));
    }
    let dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    let root = salve_git::Repo::new(&dir)
        .toplevel()
        .or_else(|| {
            abs.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == ".semaphore"))
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .unwrap_or(dir);
    let root = root.canonicalize().unwrap_or(root);
    let real = abs.canonicalize().unwrap_or(abs);
    let rel = real
        .strip_prefix(&root)
        .map_or_else(|_| real.to_string_lossy().into_owned(), |r| r.to_string_lossy().into_owned());
    Ok((root, rel))
}

fn analyze_file(file: &Path, params: &BTreeMap<String, String>, mode: Mode) -> Result<(Analysis, PathBuf), String> {
    let (root, rel) = locate(file)?;
    let bytes = std::fs::read(root.join(&rel)).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok((analyze(&rel, &bytes, &WorkTree::new(&root), params, mode), root))
}

fn print_human(a: &Analysis, root: &Path) {
    for d in &a.diagnostics {
        let source = std::fs::read_to_string(root.join(&d.file)).ok();
        err!("{}", diag::render(d, source.as_deref()));
    }
}

pub fn lint(args: &LintArgs) -> u8 {
    let files =
        if args.files.is_empty() { vec![PathBuf::from(".semaphore/semaphore.yml")] } else { args.files.clone() };
    let mut all = Vec::new();
    let mut any_error = false;
    for f in &files {
        match analyze_file(f, &BTreeMap::new(), Mode::Lint) {
            Ok((mut a, root)) => {
                if let Some(plan) = &a.plan {
                    let rel = locate(f).map(|(_, r)| r).unwrap_or_default();
                    let text = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
                    a.diagnostics.extend(crate::installation::warnings(plan, &rel, &text));
                }
                any_error |= a.has_errors();
                if args.format == Format::Human {
                    print_human(&a, &root);
                    let (e, w) = counts(&a);
                    if e == 0 {
                        err!(
                            "{}: valid{}",
                            f.display(),
                            if w > 0 { format!(" ({w} warning(s))") } else { String::new() }
                        );
                    } else {
                        err!("{}: {e} error(s), {w} warning(s)", f.display());
                    }
                }
                all.extend(a.diagnostics);
            }
            Err(msg) => {
                err!("salve lint: {msg}");
                return 2;
            }
        }
    }
    if args.format == Format::Json {
        out!("{}", serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into()));
    }
    u8::from(any_error)
}

fn counts(a: &Analysis) -> (usize, usize) {
    let e = a.diagnostics.iter().filter(|d| d.is_error()).count();
    (e, a.diagnostics.len() - e)
}

pub fn parse_params(raw: &[String]) -> Result<BTreeMap<String, String>, String> {
    raw.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("--param {p:?}: write it as NAME=VALUE")),
        })
        .collect()
}

pub fn compile(args: &CompileArgs) -> u8 {
    let params = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            err!("salve compile: {e}");
            return 2;
        }
    };
    match analyze_file(&args.file, &params, Mode::Compile) {
        Ok((a, root)) => {
            print_human(&a, &root);
            match (&a.plan, a.has_errors()) {
                (Some(plan), false) => {
                    out!("{}", serde_json::to_string_pretty(plan).unwrap_or_default());
                    0
                }
                _ => {
                    err!("salve compile: {}: the pipeline is malformed; fix the errors above", args.file.display());
                    1
                }
            }
        }
        Err(msg) => {
            err!("salve compile: {msg}");
            2
        }
    }
}
