//! The semantic rules Semaphore applies after its schema (SEMAPHORE.md §1.4–1.12) and the
//! compiled [`Plan`] the runner executes: names given to nameless blocks and jobs, dependencies
//! made explicit, `global_job_config` merged, matrix and parallelism expanded, env vars in
//! Semaphore's export order, every `when` checked.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::diag::{Sink, YPath};
use crate::model::*;
use crate::when::{self, Expr, FunctionError, Functions, Params as WhenParams, Value};

/// Platform maximum and default for a job (24 h).
pub const DEFAULT_JOB_LIMIT_MIN: u64 = 1440;
/// Default pipeline limit (60 min).
pub const DEFAULT_PIPELINE_LIMIT_MIN: u64 = 60;
const MAX_MATRIX_JOBS: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub version: String,
    pub name: String,
    pub agent: PlanAgent,
    pub execution_time_limit_minutes: u64,
    pub fail_fast: PlanFailFast,
    pub auto_cancel: PlanAutoCancel,
    pub queue: Vec<PlanQueue>,
    pub blocks: Vec<PlanBlock>,
    pub after_pipeline: Option<PlanAfterPipeline>,
    pub promotions: Vec<PlanPromotion>,
}

impl Plan {
    /// The machine types the plan's jobs run on (each block's, the pipeline's where a block names
    /// none, after_pipeline's), each once, in plan order.
    pub fn machine_types(&self) -> Vec<&str> {
        let all = self.blocks.iter().map(|b| &b.agent).chain(self.after_pipeline.iter().map(|a| &a.agent));
        let mut out: Vec<&str> = Vec::new();
        for a in all {
            if !out.contains(&a.machine_type.as_str()) {
                out.push(&a.machine_type);
            }
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanAgent {
    pub machine_type: String,
    pub os_image: Option<String>,
    pub containers: Vec<PlanContainer>,
    pub image_pull_secrets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanContainer {
    pub name: String,
    pub image: String,
    pub command: Option<String>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    pub env_vars: Vec<PlanEnvVar>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanEnvVar {
    pub name: String,
    pub value: String,
}

/// Conditions are kept as text (YAML booleans become `"true"`/`"false"`, as in Semaphore).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PlanFailFast {
    pub stop: Option<String>,
    pub cancel: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PlanAutoCancel {
    pub running: Option<String>,
    pub queued: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanQueue {
    pub name: Option<String>,
    pub scope: String,
    pub processing: String,
    pub when: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanBlock {
    pub index: usize,
    pub name: String,
    pub dependencies: Vec<String>,
    pub skip: Option<String>,
    pub run: Option<String>,
    pub filters: Vec<PlanFilter>,
    pub execution_time_limit_minutes: Option<u64>,
    pub fail_fast: PlanFailFast,
    pub agent: PlanAgent,
    pub jobs: Vec<PlanJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanFilter {
    pub label: Option<String>,
    pub label_pattern: Option<String>,
    pub action: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanJob {
    pub index: usize,
    pub name: String,
    /// Prologue commands followed by the job's commands: one bash session, stop at first failure.
    pub commands: Vec<String>,
    /// How many of `commands` come from prologues.
    pub prologue_len: usize,
    pub epilogue: PlanEpilogue,
    /// The pipeline's part of the job environment, in Semaphore's export order: parameters,
    /// `global_job_config`, task, job, `SEMAPHORE_JOB_COUNT`, matrix/parallelism variables.
    pub env_vars: Vec<PlanEnvVar>,
    /// Secret names, global ones first.
    pub secrets: Vec<String>,
    pub execution_time_limit_minutes: u64,
    /// Job rules first, then global ones; the first whose `when` is true wins.
    pub priority: Vec<PlanPriority>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PlanEpilogue {
    pub always: Vec<String>,
    pub on_pass: Vec<String>,
    pub on_fail: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanPriority {
    pub value: i64,
    pub when: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanAfterPipeline {
    pub agent: PlanAgent,
    pub jobs: Vec<PlanJob>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanPromotion {
    pub name: String,
    pub pipeline_file: String,
    pub auto_promote: Option<String>,
    pub auto_promote_on: Vec<PlanAutoPromoteOn>,
    pub parameters: Vec<PlanParameter>,
    pub deployment_target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanAutoPromoteOn {
    pub result: String,
    pub result_reason: Option<String>,
    pub branch: Vec<String>,
    pub labels: Vec<String>,
    pub label_patterns: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanParameter {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
    pub options: Vec<String>,
    pub default_value: Option<String>,
}

/// Runs every semantic rule and builds the plan. Problems go to `sink`; the plan is built
/// anyway (the caller decides whether errors make it unusable).
pub fn check_and_plan(p: &Pipeline, params: &BTreeMap<String, String>, strict: bool, sink: &mut Sink) -> Plan {
    check_whens(p, strict, sink);
    let names = block_names(p, sink);
    let deps = dependencies(p, &names, sink);
    check_time_limits(p, sink);
    let pipeline_agent = plan_agent(&p.agent);
    let g = &p.global_job_config;
    let mut blocks = Vec::new();
    for (i, b) in p.blocks.iter().enumerate() {
        let block_name = names[i].clone();
        let jobs = plan_jobs(&b.task, Some(g), params, &block_name, b.execution_time_limit, strict, sink);
        blocks.push(PlanBlock {
            index: i,
            name: block_name,
            dependencies: deps[i].clone(),
            skip: b.skip.as_ref().map(|c| c.when.text()),
            run: b.run.as_ref().map(|c| c.when.text()),
            filters: b
                .filters
                .iter()
                .map(|f| PlanFilter {
                    label: f.label.clone(),
                    label_pattern: f.label_pattern.clone(),
                    action: if f.execute { "execute" } else { "skip" }.to_owned(),
                })
                .collect(),
            execution_time_limit_minutes: b.execution_time_limit.map(|t| t.minutes),
            fail_fast: plan_fail_fast(b.task.fail_fast.as_ref()),
            agent: b.task.agent.as_ref().map_or_else(|| pipeline_agent.clone(), plan_agent),
            jobs,
        });
    }
    let after_pipeline = p.after_pipeline.as_ref().map(|t| PlanAfterPipeline {
        agent: t.agent.as_ref().map_or_else(|| pipeline_agent.clone(), plan_agent),
        // global_job_config does not apply to after_pipeline.
        jobs: plan_jobs(t, None, params, "after_pipeline", None, strict, sink),
    });
    Plan {
        version: p.version.clone(),
        name: p.name.clone().unwrap_or_else(|| "Pipeline".into()),
        agent: pipeline_agent,
        execution_time_limit_minutes: p.execution_time_limit.map_or(DEFAULT_PIPELINE_LIMIT_MIN, |t| t.minutes),
        fail_fast: plan_fail_fast(p.fail_fast.as_ref()),
        auto_cancel: p.auto_cancel.as_ref().map_or_else(PlanAutoCancel::default, |a| PlanAutoCancel {
            running: a.running.as_ref().map(|c| c.when.text()),
            queued: a.queued.as_ref().map(|c| c.when.text()),
        }),
        queue: p
            .queue
            .iter()
            .map(|q| PlanQueue {
                name: q.name.clone(),
                scope: q.scope.clone().unwrap_or_else(|| "project".into()),
                processing: q.processing.clone().unwrap_or_else(|| "serialized".into()),
                when: q.when.as_ref().map(|c| c.when.text()),
            })
            .collect(),
        blocks,
        after_pipeline,
        promotions: p
            .promotions
            .iter()
            .map(|pr| PlanPromotion {
                name: pr.name.clone(),
                pipeline_file: pr.pipeline_file.clone(),
                auto_promote: pr.auto_promote.as_ref().map(|c| c.when.text()),
                auto_promote_on: pr
                    .auto_promote_on
                    .iter()
                    .map(|a| PlanAutoPromoteOn {
                        result: a.result.clone(),
                        result_reason: a.result_reason.clone(),
                        branch: a.branch.clone(),
                        labels: a.labels.clone(),
                        label_patterns: a.label_patterns.clone(),
                    })
                    .collect(),
                parameters: pr
                    .parameters
                    .iter()
                    .map(|x| PlanParameter {
                        name: x.name.clone(),
                        description: x.description.clone(),
                        required: x.required,
                        options: x.options.clone(),
                        default_value: x.default_value.clone(),
                    })
                    .collect(),
                deployment_target: pr.deployment_target.clone(),
            })
            .collect(),
    }
}

fn plan_fail_fast(f: Option<&FailFast>) -> PlanFailFast {
    f.map_or_else(PlanFailFast::default, |f| PlanFailFast {
        stop: f.stop.as_ref().map(|c| c.when.text()),
        cancel: f.cancel.as_ref().map(|c| c.when.text()),
    })
}

fn plan_agent(a: &Agent) -> PlanAgent {
    PlanAgent {
        machine_type: a.machine_type.clone(),
        os_image: a.os_image.clone(),
        containers: a
            .containers
            .iter()
            .map(|c| PlanContainer {
                name: c.name.clone(),
                image: c.image.clone(),
                command: c.command.clone(),
                entrypoint: c.entrypoint.clone(),
                user: c.user.clone(),
                env_vars: c.env_vars.iter().map(env).collect(),
                secrets: c.secrets.clone(),
            })
            .collect(),
        image_pull_secrets: a.image_pull_secrets.clone(),
    }
}

fn env(e: &EnvVar) -> PlanEnvVar {
    PlanEnvVar { name: e.name.clone(), value: e.value.clone() }
}

/// `Nameless block 1`, `Nameless block 2`, ... skipping names that are taken; duplicates are
/// errors.
fn block_names(p: &Pipeline, sink: &mut Sink) -> Vec<String> {
    let taken: HashSet<&str> = p.blocks.iter().filter_map(|b| b.name.as_deref()).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, b) in p.blocks.iter().enumerate() {
        if let Some(name) = b.name.as_deref()
            && let Some(first) = seen.insert(name, i)
        {
            sink.error(
                    b.pos,
                    &YPath::root().key("blocks").idx(i).key("name"),
                    format!("There are at least two blocks with same name: {name} (blocks {first} and {i}); give each block a unique name"),
                );
        }
    }
    let mut n = 0;
    p.blocks
        .iter()
        .map(|b| match &b.name {
            Some(name) => name.clone(),
            None => loop {
                n += 1;
                let candidate = format!("Nameless block {n}");
                if !taken.contains(candidate.as_str()) {
                    break candidate;
                }
            },
        })
        .collect()
}

fn dependencies(p: &Pipeline, names: &[String], sink: &mut Sink) -> Vec<Vec<String>> {
    let explicit = p.blocks.iter().filter(|b| b.dependencies.is_some()).count();
    if explicit == 0 {
        // Implicit mode: a linear chain.
        return (0..p.blocks.len()).map(|i| if i == 0 { vec![] } else { vec![names[i - 1].clone()] }).collect();
    }
    if explicit != p.blocks.len() {
        let first_missing = p.blocks.iter().position(|b| b.dependencies.is_none()).unwrap_or(0);
        sink.error(
            p.blocks[first_missing].pos,
            &YPath::root().key("blocks").idx(first_missing),
            "There are blocks with both explicitly and implicitly defined dependencies. This is not allowed, please use only one of this formats. Give every block a `dependencies` list (`[]` for blocks that start first), or remove them all for a linear order.",
        );
    }
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut deps = Vec::new();
    for (i, b) in p.blocks.iter().enumerate() {
        let mut list = Vec::new();
        for (j, (d, pos)) in b.dependencies.iter().flatten().enumerate() {
            if index.contains_key(d.as_str()) {
                list.push(d.clone());
            } else {
                sink.error(
                    *pos,
                    &YPath::root().key("blocks").idx(i).key("dependencies").idx(j),
                    format!(
                        "{{:unknown_block_name, \"{d}\"}}: block '{}' depends on '{d}', but there is no block with that name. Known blocks: {}",
                        names[i],
                        names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        deps.push(list);
    }
    // Cycles: depth-first search in definition order, following dependencies.
    let mut state = vec![0u8; names.len()];
    let mut reported = false;
    for start in 0..names.len() {
        if reported {
            break;
        }
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(start, &deps, &index, &mut state, &mut path) {
            let text = cycle.iter().map(|i| format!("'{}'", names[*i])).collect::<Vec<_>>().join(" \u{2192} ");
            sink.error(
                p.blocks[cycle[0]].pos,
                &YPath::root().key("blocks").idx(cycle[0]).key("dependencies"),
                format!("Circular dependency between blocks detected: {text}. Blocks cannot depend on each other in a cycle; remove one of these dependencies."),
            );
            reported = true;
        }
    }
    if reported {
        // Drop edges so the plan stays a DAG.
        return deps.iter().map(|_| Vec::new()).collect();
    }
    deps
}

fn find_cycle(
    node: usize,
    deps: &[Vec<String>],
    index: &HashMap<&str, usize>,
    state: &mut [u8],
    path: &mut Vec<usize>,
) -> Option<Vec<usize>> {
    if state[node] == 2 {
        return None;
    }
    if state[node] == 1 {
        let from = path.iter().position(|n| *n == node).unwrap_or(0);
        let mut cycle = path[from..].to_vec();
        cycle.push(node);
        return Some(cycle);
    }
    state[node] = 1;
    path.push(node);
    for d in &deps[node] {
        if let Some(&next) = index.get(d.as_str())
            && let Some(c) = find_cycle(next, deps, index, state, path)
        {
            return Some(c);
        }
    }
    path.pop();
    state[node] = 2;
    None
}

/// `N minute(s)`, `N hour(s)`, `H hours and M minutes`.
pub fn format_minutes(m: u64) -> String {
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (m / 60, m % 60) {
        (0, min) => unit(min, "minute"),
        (h, 0) => unit(h, "hour"),
        (h, min) => format!("{} and {}", unit(h, "hour"), unit(min, "minute")),
    }
}

fn check_time_limits(p: &Pipeline, sink: &mut Sink) {
    let root = YPath::root();
    let ppl = p.execution_time_limit.map_or(DEFAULT_PIPELINE_LIMIT_MIN, |t| t.minutes);
    let any_long_job = p
        .blocks
        .iter()
        .flat_map(|b| &b.task.jobs)
        .any(|j| j.execution_time_limit.is_some_and(|t| t.minutes >= DEFAULT_JOB_LIMIT_MIN));
    if let Some(t) = p.execution_time_limit.filter(|t| t.minutes > DEFAULT_JOB_LIMIT_MIN && !any_long_job) {
        sink.error(
            t.pos,
            &root.key("execution_time_limit"),
            format!(
                "The pipeline level execution_time_limit is set to {} which is longer than default job level execution_time_limit of 24 hours. This would cause the pipeline to stop as soon as first job reaches that default time limit for jobs. Set an execution_time_limit on the long jobs, or lower this one.",
                format_minutes(t.minutes)
            ),
        );
    }
    for (i, b) in p.blocks.iter().enumerate() {
        let bp = root.key("blocks").idx(i);
        let block_long_job =
            b.task.jobs.iter().any(|j| j.execution_time_limit.is_some_and(|t| t.minutes >= DEFAULT_JOB_LIMIT_MIN));
        if let Some(t) = b.execution_time_limit {
            if t.minutes > DEFAULT_JOB_LIMIT_MIN && !block_long_job {
                sink.error(
                    t.pos,
                    &bp.key("execution_time_limit"),
                    format!(
                        "The execution_time_limit of a block on path '{}' is set to {} which is longer than default job level execution_time_limit of 24 hours. This would cause the block to stop as soon as first job reaches that default time limit for jobs.",
                        bp.pointer(),
                        format_minutes(t.minutes)
                    ),
                );
            }
            if t.minutes > ppl {
                sink.error(
                    t.pos,
                    &bp.key("execution_time_limit"),
                    format!(
                        "Block on path '{}' has an execution_time_limit of {} which is longer than execution_time_limit of a whole pipeline which is {}. This would cause that block to stop when pipeline level time limit is reached.",
                        bp.pointer(),
                        format_minutes(t.minutes),
                        format_minutes(ppl)
                    ),
                );
            }
        }
        for j in &b.task.jobs {
            let Some(t) = j.execution_time_limit else { continue };
            if t.minutes > ppl {
                sink.error(
                    t.pos,
                    &j.path.key("execution_time_limit"),
                    format!(
                        "Job on path '{}' has an execution_time_limit of {} which is longer than execution_time_limit of a whole pipeline which is {}. This would cause that job to stop when pipeline level time limit is reached.",
                        j.path.pointer(),
                        format_minutes(t.minutes),
                        format_minutes(ppl)
                    ),
                );
            }
            if let Some(bt) = b.execution_time_limit.filter(|bt| t.minutes > bt.minutes) {
                sink.error(
                    t.pos,
                    &j.path.key("execution_time_limit"),
                    format!(
                        "Job on path '{}' has an execution_time_limit of {} which is longer than {} that is the execution_time_limit of a block to which this job belongs. This would cause that job to stop when block level time limit is reached.",
                        j.path.pointer(),
                        format_minutes(t.minutes),
                        format_minutes(bt.minutes)
                    ),
                );
            }
        }
    }
}

/// Expands a task's jobs: names, commands, epilogues, env vars, matrix and parallelism.
fn plan_jobs(
    task: &Task,
    global: Option<&GlobalJobConfig>,
    params: &BTreeMap<String, String>,
    block: &str,
    block_limit: Option<TimeLimit>,
    strict: bool,
    sink: &mut Sink,
) -> Vec<PlanJob> {
    let empty = GlobalJobConfig::default();
    let g = global.unwrap_or(&empty);
    let mut prologue = g.prologue.clone();
    prologue.extend(task.prologue.iter().cloned());
    // Epilogues: task first, then global.
    let concat = |a: &[String], b: &[String]| a.iter().chain(b).cloned().collect::<Vec<_>>();
    let epilogue = PlanEpilogue {
        always: concat(&task.epilogue.always, &g.epilogue.always),
        on_pass: concat(&task.epilogue.on_pass, &g.epilogue.on_pass),
        on_fail: concat(&task.epilogue.on_fail, &g.epilogue.on_fail),
    };
    let mut base_env: Vec<PlanEnvVar> =
        params.iter().map(|(k, v)| PlanEnvVar { name: k.clone(), value: v.clone() }).collect();
    base_env.extend(g.env_vars.iter().map(env));
    base_env.extend(task.env_vars.iter().map(env));
    let secrets: Vec<String> = g.secrets.iter().chain(&task.secrets).map(|s| s.name.clone()).collect();

    // Names: explicit duplicates are errors; nameless jobs are numbered.
    let explicit: Vec<&str> = task.jobs.iter().filter_map(|j| j.name.as_deref()).collect();
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    for n in &explicit {
        if !seen.insert(*n) && !dups.contains(n) {
            dups.push(*n);
        }
    }
    if !dups.is_empty() {
        let list = dups.iter().map(|d| format!("[\"{d}\", \"{d}\"]")).collect::<Vec<_>>().join(", ");
        sink.error(
            task.pos,
            &task.path.key("jobs"),
            format!("{{:duplicate_names, [{list}]}}: block '{block}' has more than one job named {}; give each job a unique name", dups.iter().map(|d| format!("'{d}'")).collect::<Vec<_>>().join(", ")),
        );
    }
    let mut n_nameless = 0;
    let mut jobs = Vec::new();
    let mut block_matrix_total = 0usize;
    for job in &task.jobs {
        let name = match &job.name {
            Some(n) => n.clone(),
            None => loop {
                n_nameless += 1;
                let candidate = format!("Nameless {n_nameless}");
                if !explicit.contains(&candidate.as_str()) {
                    break candidate;
                }
            },
        };
        let mut env_vars = base_env.clone();
        env_vars.extend(job.env_vars.iter().map(env));
        let variants = expand(job, &name, block, strict, sink);
        if !job.matrix.is_empty() {
            block_matrix_total += variants.len();
        }
        let mut commands = prologue.clone();
        commands.extend(job.commands.iter().cloned());
        let mut priority: Vec<PlanPriority> = job
            .priority
            .iter()
            .chain(&g.priority)
            .map(|r| PlanPriority { value: r.value, when: r.when.when.text() })
            .collect();
        priority.dedup();
        let limit = job
            .execution_time_limit
            .map(|t| t.minutes)
            .or(block_limit.map(|t| t.minutes))
            .unwrap_or(DEFAULT_JOB_LIMIT_MIN);
        for (suffix, extra) in variants {
            let mut env_vars = env_vars.clone();
            env_vars.extend(extra);
            jobs.push(PlanJob {
                index: jobs.len(),
                name: match suffix {
                    Some(s) => format!("{name} - {s}"),
                    None => name.clone(),
                },
                commands: commands.clone(),
                prologue_len: prologue.len(),
                epilogue: epilogue.clone(),
                env_vars,
                secrets: secrets.clone(),
                execution_time_limit_minutes: limit,
                priority: priority.clone(),
            });
        }
    }
    for b in &task.boosters {
        let label = b
            .name
            .clone()
            .unwrap_or_else(|| if b.kind == "rspec" { "RSpec Booster".into() } else { "Cucumber Booster".into() });
        let n = usize::try_from(b.job_count).unwrap_or(1).max(1);
        for i in 1..=n {
            let mut commands = prologue.clone();
            commands.push(format!("{}_booster --job {i}/{n}", b.kind));
            let mut env_vars = base_env.clone();
            env_vars.push(PlanEnvVar { name: "SEMAPHORE_JOB_COUNT".into(), value: n.to_string() });
            env_vars.push(PlanEnvVar { name: "SEMAPHORE_JOB_INDEX".into(), value: i.to_string() });
            jobs.push(PlanJob {
                index: jobs.len(),
                name: format!("{label} - {i}/{n}"),
                commands,
                prologue_len: prologue.len(),
                epilogue: epilogue.clone(),
                env_vars,
                secrets: secrets.clone(),
                execution_time_limit_minutes: block_limit.map_or(DEFAULT_JOB_LIMIT_MIN, |t| t.minutes),
                priority: Vec::new(),
            });
        }
    }
    if block_matrix_total > MAX_MATRIX_JOBS {
        sink.error(
            task.pos,
            &task.path.key("jobs"),
            format!("The job matrix of block '{block}' exceeds maximum allowed size ({MAX_MATRIX_JOBS}): its matrices create {block_matrix_total} jobs. Use fewer values."),
        );
    }
    jobs
}

type Variant = (Option<String>, Vec<PlanEnvVar>);

/// Parallelism and matrix expansion: `(name suffix, extra env vars)` per generated job.
fn expand(job: &Job, name: &str, block: &str, strict: bool, sink: &mut Sink) -> Vec<Variant> {
    if let Some(par) = &job.parallelism {
        let n = match par {
            Parallelism::Count(n) => Some(*n),
            Parallelism::Template(s) => s.trim().parse::<i64>().ok(),
        };
        let Some(n) = n.filter(|n| (1..=50).contains(n)) else {
            if !strict && matches!(par, Parallelism::Template(_)) {
                // A template is only known when the pipeline is compiled with its parameters.
                return vec![(None, Vec::new())];
            }
            sink.error(
                job.pos,
                &job.path.key("parallelism"),
                format!("Parallelism value for job '{name}' in block '{block}' is not an integer. It must be a whole number from 1 to 50 (after `${{{{ parameters.X }}}}` templates are filled in)."),
            );
            return vec![(None, Vec::new())];
        };
        return (1..=n)
            .map(|i| {
                (
                    Some(format!("{i}/{n}")),
                    vec![
                        PlanEnvVar { name: "SEMAPHORE_JOB_COUNT".into(), value: n.to_string() },
                        PlanEnvVar { name: "SEMAPHORE_JOB_INDEX".into(), value: i.to_string() },
                    ],
                )
            })
            .collect();
    }
    if job.matrix.is_empty() {
        return vec![(None, Vec::new())];
    }
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut dup = Vec::new();
    for axis in &job.matrix {
        if !seen.insert(axis.env_var.clone()) {
            dup.push(axis.env_var.clone());
        }
        let values = match &axis.values {
            MatrixValues::List(v) => Some(v.clone()),
            MatrixValues::Template(s) => serde_json::from_str::<Vec<String>>(s).ok().filter(|v| !v.is_empty()),
        };
        match values {
            Some(v) => axes.push((axis.env_var.clone(), v)),
            None if !strict && matches!(axis.values, MatrixValues::Template(_)) => return vec![(None, Vec::new())],
            None => {
                sink.error(
                    axis.pos,
                    &job.path.key("matrix"),
                    format!("Matrix values for env_var '{}' (block '{block}', job '{name}' must be a non-empty list of strings.", axis.env_var),
                );
                return vec![(None, Vec::new())];
            }
        }
    }
    if !dup.is_empty() {
        sink.error(
            job.pos,
            &job.path.key("matrix"),
            format!("Duplicate environment variable(s): '{}' in job matrix (block '{block}', job '{name}'). Give each axis its own env_var.", dup.join("', '")),
        );
        return vec![(None, Vec::new())];
    }
    let total: usize = axes.iter().map(|(_, v)| v.len()).try_fold(1usize, usize::checked_mul).unwrap_or(usize::MAX);
    if total > MAX_MATRIX_JOBS {
        sink.error(
            job.pos,
            &job.path.key("matrix"),
            format!("The job matrix (block '{block}', job '{name}') exceeds maximum allowed size ({MAX_MATRIX_JOBS}): it would create {total} jobs. Use fewer values."),
        );
        return vec![(None, Vec::new())];
    }
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for (var, values) in &axes {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((var.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|c| {
            let suffix = c.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            (Some(suffix), c.into_iter().map(|(name, value)| PlanEnvVar { name, value }).collect())
        })
        .collect()
}

/// `change_in` as the dry run sees it: arity is checked and arguments are validated, nothing
/// is looked up in git.
struct DryRunFunctions;

impl Functions for DryRunFunctions {
    fn arities(&self, name: &str) -> Option<Vec<usize>> {
        (name == "change_in").then(|| vec![1, 2])
    }
    fn call(&self, _name: &str, _args: &[Value], _params: &WhenParams) -> Result<Value, FunctionError> {
        Ok(Value::Bool(false))
    }
}

/// Every `when` in the pipeline is evaluated in a dry run with empty ref keywords (and
/// `result`/`result_reason` only for promotions), exactly as Semaphore's validator does.
fn check_whens(p: &Pipeline, strict: bool, sink: &mut Sink) {
    let mut conds: Vec<(&Condition, bool)> = Vec::new();
    for b in &p.blocks {
        conds.extend(b.skip.iter().chain(&b.run).map(|c| (c, false)));
        for j in &b.task.jobs {
            conds.extend(j.priority.iter().map(|r| (&r.when, false)));
        }
        if let Some(f) = &b.task.fail_fast {
            conds.extend(f.stop.iter().chain(&f.cancel).map(|c| (c, false)));
        }
    }
    conds.extend(p.global_job_config.priority.iter().map(|r| (&r.when, false)));
    if let Some(f) = &p.fail_fast {
        conds.extend(f.stop.iter().chain(&f.cancel).map(|c| (c, false)));
    }
    if let Some(a) = &p.auto_cancel {
        conds.extend(a.running.iter().chain(&a.queued).map(|c| (c, false)));
    }
    conds.extend(p.queue.iter().filter_map(|q| q.when.as_ref()).map(|c| (c, false)));
    conds.extend(p.promotions.iter().filter_map(|pr| pr.auto_promote.as_ref()).map(|c| (c, true)));
    for (c, promotion) in conds {
        let When::Expr(text) = &c.when else { continue };
        let mut params = WhenParams::new();
        for k in ["branch", "tag", "pull_request"] {
            params.insert(k.into(), "".into());
        }
        if promotion {
            params.insert("result".into(), "".into());
            params.insert("result_reason".into(), "".into());
        }
        let res = when::parse(text).and_then(|ast| {
            check_change_in_args(&ast, promotion)?;
            when::evaluate_ast(&ast, &params, &DryRunFunctions, true)
        });
        if let Err(e) = res {
            let msg = format!("Invalid 'when' condition on path '{}': {}", c.path.pointer(), e.message());
            if strict {
                sink.error(c.pos, &c.path, msg);
            } else {
                sink.warning(c.pos, &c.path, format!("{msg} (the pipeline fails as malformed when it runs; `salve when eval` shows how a condition reads)"));
            }
        }
    }
}

fn check_change_in_args(expr: &Expr, promotion: bool) -> Result<(), when::WhenError> {
    match expr {
        // With no arguments the arity check reports the problem.
        Expr::Call { name, params } if name == "change_in" && !params.is_empty() => {
            when::change_in::parse_args(params, promotion).map(|_| ()).map_err(|e| match e {
                FunctionError::Message(m) | FunctionError::Typed { message: m, .. } => {
                    when::WhenError::Message(format!("Function 'change_in' returned error: {m}"))
                }
            })
        }
        Expr::Binary { left, right, .. } => {
            check_change_in_args(left, promotion)?;
            check_change_in_args(right, promotion)
        }
        Expr::Value(_) | Expr::Keyword(_) | Expr::Call { .. } => Ok(()),
    }
}
