//! Semaphore pipeline files and the `when` condition language, as a pure library: text in,
//! model and diagnostics out. No IO, no async: files a pipeline refers to (`task_file`,
//! `commands_file`) are read through a [`FileSource`] the caller supplies.

pub mod compile;
pub mod decode;
pub mod diag;
pub mod model;
pub mod template;
pub mod when;
pub mod yaml;

use std::collections::BTreeMap;

pub use compile::Plan;
pub use decode::{FileSource, NoFiles};
pub use diag::{Diagnostic, Severity};

/// The outcome of reading a pipeline file: the model (when the file could be decoded at all),
/// the compiled plan, and every diagnostic, errors first in file order.
#[derive(Debug)]
pub struct Analysis {
    pub pipeline: Option<model::Pipeline>,
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// How much of the pipeline's run-time context is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The file on its own (`salve lint`): the schema and every structural rule are errors;
    /// `when` conditions that cannot be evaluated and referenced files that cannot be read are
    /// warnings that say the run will fail; `${{ }}` templates are left alone.
    Lint,
    /// The pipeline as it is about to run (`salve compile`, the runner): templates are filled
    /// in and everything Semaphore would reject as malformed is an error.
    Compile,
}

/// Reads, validates and compiles a pipeline file. `file` is its repository-relative path (it
/// anchors `task_file`/`commands_file` paths); `params` fill `${{ parameters.X }}` templates and
/// are exported first in every job. Never fails and never panics: problems are diagnostics.
pub fn analyze(
    file: &str,
    bytes: &[u8],
    files: &dyn FileSource,
    params: &BTreeMap<String, String>,
    mode: Mode,
) -> Analysis {
    let strict = mode == Mode::Compile;
    let mut sink = diag::Sink::new(file);
    let Some(mut root) = yaml::load(bytes, &mut sink) else {
        return Analysis { pipeline: None, plan: None, diagnostics: sink.diags };
    };
    if strict {
        template::apply(&mut root, params, &diag::YPath::root(), &mut sink);
    }
    let mut decoder =
        decode::Decoder { sink: &mut sink, files, dir: decode::parent_dir(file), extra: Vec::new(), strict };
    let pipeline = decoder.pipeline(&root);
    let extra = std::mem::take(&mut decoder.extra);
    let plan = pipeline.as_ref().map(|p| compile::check_and_plan(p, params, strict, &mut sink));
    let mut diagnostics = sink.diags;
    diagnostics.extend(extra);
    diagnostics.sort_by(|a, b| (a.severity, &a.file, a.line, a.column).cmp(&(b.severity, &b.file, b.line, b.column)));
    Analysis { pipeline, plan, diagnostics }
}
