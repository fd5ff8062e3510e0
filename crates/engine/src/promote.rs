//! What happens around a pipeline rather than inside it: which queue it waits in and what it
//! cancels (SEMAPHORE.md §1.9), and which promotions fire when it is done, with which
//! parameters (§1.10, §6). Pure rules; the server applies them.

use std::collections::BTreeMap;

use salve_pipeline::Plan;
use salve_pipeline::compile::PlanPromotion;
use salve_pipeline::when::{self, Functions};

use crate::env::GitContext;

/// Why a queue, a cancel rule or a promotion could not be worked out: each names what in the
/// pipeline file (or in the request) to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    /// A `when` condition (of a queue, `auto_cancel` or `auto_promote`) does not evaluate.
    #[error("Invalid 'when' condition on path '{path}': {message}")]
    Condition { path: String, message: String },
    #[error("auto_promote_on: invalid regex '{pattern}': {message}")]
    Regex { pattern: String, message: String },
    #[error("The pipeline has no promotions, so it has no target '{0}'.")]
    NoPromotions(String),
    #[error("Promotion target '{target}' is not defined; the pipeline's targets are: {targets}.")]
    UnknownTarget { target: String, targets: String },
    #[error("Triggering target when pipeline is not passed requires override confirmation.")]
    NeedsOverride,
    #[error("Parameter '{0}' is not defined in promotion's yml definition.")]
    UnknownParameter(String),
    #[error("Value '{value}' of parameter '{name}' is not one of predefined options.")]
    NotAnOption { name: String, value: String },
    #[error("Missing value for required parameter '{0}'.")]
    MissingParameter(String),
    #[error("pipeline_file '{0}' points outside the repository")]
    OutsideRepository(String),
    #[error("pipeline_file '{0}' names no file")]
    NoFile(String),
}

fn condition(path: String, e: &when::WhenError) -> PromoteError {
    PromoteError::Condition { path, message: e.message().to_owned() }
}

/// The queue a pipeline waits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// `project:<name>` or `organization:<name>`.
    pub key: String,
    /// Pipelines of a parallel queue do not wait for each other.
    pub parallel: bool,
}

/// What a newer pipeline does to older ones of its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCancel {
    None,
    /// Cancel the queued ones.
    Queued,
    /// Stop the running ones and cancel the queued ones.
    Running,
}

impl AutoCancel {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoCancel::None => "",
            AutoCancel::Queued => "queued",
            AutoCancel::Running => "running",
        }
    }
}

/// The queue of a pipeline: the first rule whose `when` holds, else the default queue
/// `<label>-<file>` (scope project, serialized).
pub fn queue(plan: &Plan, git: &GitContext, file: &str) -> Result<Queue, PromoteError> {
    let params = git.when_params();
    for (i, rule) in plan.queue.iter().enumerate() {
        let applies = match &rule.when {
            Some(expr) => when::evaluate(expr, &params, &when::NoFunctions, false)
                .map_err(|e| condition(format!("#/queue/{i}/when"), &e))?,
            None => true,
        };
        if applies {
            let name = rule.name.clone().unwrap_or_else(|| default_queue(git, file));
            let scope = if rule.scope == "organization" { "organization" } else { "project" };
            return Ok(Queue { key: format!("{scope}:{name}"), parallel: rule.processing == "parallel" });
        }
    }
    Ok(Queue { key: format!("project:{}", default_queue(git, file)), parallel: false })
}

fn default_queue(git: &GitContext, file: &str) -> String {
    format!("{}-{file}", git.label)
}

/// The pipeline's `auto_cancel` (`running` is checked first).
pub fn auto_cancel(plan: &Plan, git: &GitContext) -> Result<AutoCancel, PromoteError> {
    let params = git.when_params();
    let holds = |what: &str, expr: &Option<String>| match expr {
        Some(e) => when::evaluate(e, &params, &when::NoFunctions, false)
            .map_err(|err| condition(format!("#/auto_cancel/{what}/when"), &err)),
        None => Ok(false),
    };
    if holds("running", &plan.auto_cancel.running)? {
        Ok(AutoCancel::Running)
    } else if holds("queued", &plan.auto_cancel.queued)? {
        Ok(AutoCancel::Queued)
    } else {
        Ok(AutoCancel::None)
    }
}

/// A promotion that fired: the pipeline file to start (repository-relative) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub name: String,
    pub pipeline_file: String,
    pub params: BTreeMap<String, String>,
}

/// The promotions that fire automatically for a pipeline that ended with `result` (§6.2):
/// a deprecated `auto_promote_on` entry matches, or `auto_promote.when` holds. Each gets its
/// parameters' non-empty defaults only. An evaluation error aborts them all.
pub fn auto_promotions(
    plan: &Plan,
    file: &str,
    git: &GitContext,
    result: &str,
    result_reason: Option<&str>,
    functions: &dyn Functions,
) -> Result<Vec<Fired>, PromoteError> {
    let mut params = git.when_params();
    params.insert("result".into(), result.into());
    params.insert("result_reason".into(), result_reason.unwrap_or("").into());
    let mut fired = Vec::new();
    for (i, p) in plan.promotions.iter().enumerate() {
        let on = p.auto_promote_on.iter().try_fold(false, |hit, a| {
            if hit {
                return Ok(true);
            }
            let reason_ok = a.result_reason.as_deref().is_none_or(|r| r.is_empty() || Some(r) == result_reason);
            Ok::<_, PromoteError>(a.result == result && reason_ok && branch_matches(a, &git.label)?)
        })?;
        let when = match &p.auto_promote {
            Some(expr) if !on => when::evaluate(expr, &params, functions, false)
                .map_err(|e| condition(format!("#/promotions/{i}/auto_promote/when"), &e))?,
            _ => false,
        };
        if on || when {
            let params = p
                .parameters
                .iter()
                .filter_map(|x| x.default_value.clone().filter(|d| !d.is_empty()).map(|d| (x.name.clone(), d)))
                .collect();
            fired.push(Fired { name: p.name.clone(), pipeline_file: target_file(file, &p.pipeline_file)?, params });
        }
    }
    Ok(fired)
}

fn branch_matches(a: &salve_pipeline::compile::PlanAutoPromoteOn, label: &str) -> Result<bool, PromoteError> {
    if !a.labels.is_empty() {
        return Ok(a.labels.iter().any(|l| l == label));
    }
    let patterns = if a.label_patterns.is_empty() { &a.branch } else { &a.label_patterns };
    if patterns.is_empty() {
        return Ok(true);
    }
    for p in patterns {
        let re = fancy_regex::Regex::new(p)
            .map_err(|e| PromoteError::Regex { pattern: p.clone(), message: e.to_string() })?;
        if re.is_match(label).unwrap_or(false) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A manual promotion of `target` (§6.3): the parameters the new pipeline gets, or why the
/// promotion is refused.
pub fn manual_promotion(
    plan: &Plan,
    file: &str,
    target: &str,
    parent_result: Option<&str>,
    supplied: &BTreeMap<String, String>,
    override_: bool,
) -> Result<Fired, PromoteError> {
    let Some(p) = plan.promotions.iter().find(|p| p.name == target) else {
        let names: Vec<&str> = plan.promotions.iter().map(|p| p.name.as_str()).collect();
        return Err(if names.is_empty() {
            PromoteError::NoPromotions(target.to_owned())
        } else {
            PromoteError::UnknownTarget { target: target.to_owned(), targets: names.join(", ") }
        });
    };
    if parent_result != Some("passed") && !override_ {
        return Err(PromoteError::NeedsOverride);
    }
    Ok(Fired {
        name: p.name.clone(),
        pipeline_file: target_file(file, &p.pipeline_file)?,
        params: params(p, supplied)?,
    })
}

fn params(p: &PlanPromotion, supplied: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, PromoteError> {
    for name in supplied.keys() {
        if !p.parameters.iter().any(|x| &x.name == name) {
            return Err(PromoteError::UnknownParameter(name.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for x in &p.parameters {
        let default = x.default_value.clone().filter(|d| !d.is_empty());
        match supplied.get(&x.name) {
            Some(v) => {
                if !x.options.is_empty() && !x.options.contains(v) && default.as_ref() != Some(v) {
                    return Err(PromoteError::NotAnOption { name: x.name.clone(), value: v.clone() });
                }
                out.insert(x.name.clone(), v.clone());
            }
            None => match default {
                Some(d) => {
                    out.insert(x.name.clone(), d);
                }
                None if x.required => return Err(PromoteError::MissingParameter(x.name.clone())),
                None => {}
            },
        }
    }
    Ok(out)
}

/// A promotion's `pipeline_file`, relative to the promoting pipeline's folder unless it starts
/// with `/` (the repository root). It may not leave the repository.
pub fn target_file(current: &str, target: &str) -> Result<String, PromoteError> {
    let base = match target.strip_prefix('/') {
        Some(_) => Vec::new(),
        None => current.rsplit_once('/').map_or_else(Vec::new, |(dir, _)| dir.split('/').collect()),
    };
    let mut parts: Vec<&str> = base;
    for part in target.trim_start_matches('/').split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(PromoteError::OutsideRepository(target.to_owned()));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(PromoteError::NoFile(target.to_owned()));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_files_resolve_against_the_promoting_file() {
        assert_eq!(target_file(".semaphore/semaphore.yml", "heal.yml").as_deref(), Ok(".semaphore/heal.yml"));
        assert_eq!(target_file(".semaphore/semaphore.yml", "/ci/pr.yml").as_deref(), Ok("ci/pr.yml"));
        assert_eq!(target_file(".semaphore/semaphore.yml", "../x.yml").as_deref(), Ok("x.yml"));
        assert!(target_file(".semaphore/semaphore.yml", "../../etc/passwd").is_err());
        assert!(target_file("semaphore.yml", "/").is_err());
    }
}
