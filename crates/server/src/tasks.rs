//! Tasks (Semaphore's scheduled and on-demand workflows): a project's named way to run a
//! pipeline file on a branch with parameters, by hand (CLI, API, pages, MCP) or on a cron
//! schedule in UTC. A scheduled run is taken by one replica (the store moves `next_run_ms` on with
//! a compare-and-set); a run missed while no server was up fires once when one is, then the
//! schedule goes on from then. Every start, and every start that could not be made, is kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use salve_contract::api;
use salve_contract::time::civil;
use salve_engine::RefKind;
use salve_git::Repo;
use salve_store::{ProjectRow, TaskRow, TaskTriggerRow, WorkflowRow};

use crate::intake::Trigger;
use crate::server::{DEFAULT_FILE, Result, Server, WorkError};

/// How often a server looks for due scheduled runs.
const TICK: Duration = Duration::from_secs(5);

/// A cron schedule: minute hour day-of-month month day-of-week, each a set of values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day of month and day of week both restricted: a day matching either fires (as cron has it).
    either_day: bool,
}

impl Cron {
    /// Five fields (`*`, `N`, `A-B`, `*/S`, `A-B/S`, lists; month and day names), or `@hourly`,
    /// `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`.
    pub fn parse(text: &str) -> std::result::Result<Cron, String> {
        let text = text.trim();
        let expanded = match text {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields.as_slice() else {
            return Err(format!(
                "'{text}' is not a cron schedule: give five fields, minute hour day-of-month month day-of-week (e.g. '0 3 * * 1-5', in UTC)"
            ));
        };
        const MONTHS: &[&str] = &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let weekdays = field(weekday, 0, 7, DAYS, 0, "day of week")?;
        // 7 is Sunday too.
        let weekdays = (weekdays | (weekdays >> 7)) & 0x7f;
        Ok(Cron {
            minutes: field(minute, 0, 59, &[], 0, "minute")?,
            hours: field(hour, 0, 23, &[], 0, "hour")? as u32,
            days: field(day, 1, 31, &[], 1, "day of month")? as u32,
            months: field(month, 1, 12, MONTHS, 1, "month")? as u16,
            weekdays: weekdays as u8,
            either_day: !day.starts_with('*') && !weekday.starts_with('*'),
        })
    }

    /// The first minute strictly after `after_ms` that the schedule fires at, within five years.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        const MINUTE: i64 = 60_000;
        const DAY: i64 = 86_400_000;
        let start = (after_ms.div_euclid(MINUTE) + 1) * MINUTE;
        let first_day = start.div_euclid(DAY);
        for day in first_day..first_day + 366 * 5 + 2 {
            let (_, month, dom) = civil(day);
            let weekday = (day + 4).rem_euclid(7) as u32;
            let by_date = self.days & (1 << dom) != 0;
            let by_weekday = self.weekdays & (1 << weekday) != 0;
            let day_ok = if self.either_day { by_date || by_weekday } else { by_date && by_weekday };
            if self.months & (1 << month) == 0 || !day_ok {
                continue;
            }
            let from = if day == first_day { start - day * DAY } else { 0 };
            for hour in 0..24i64 {
                if self.hours & (1 << hour) == 0 || (hour + 1) * 3_600_000 <= from {
                    continue;
                }
                for minute in 0..60i64 {
                    let at = day * DAY + hour * 3_600_000 + minute * MINUTE;
                    if self.minutes & (1 << minute) != 0 && at >= start {
                        return Some(at);
                    }
                }
            }
        }
        None
    }
}

/// One cron field as a bit set of the values it allows.
fn field(
    text: &str,
    low: u32,
    high: u32,
    names: &[&str],
    first_name: u32,
    what: &str,
) -> std::result::Result<u64, String> {
    let bad = |why: &str| format!("cron {what} '{text}': {why}");
    let value = |s: &str| -> std::result::Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(first_name + i as u32);
        }
        let n: u32 = s.parse().map_err(|_| bad(&format!("'{s}' is not a number")))?;
        if n < low || n > high {
            return Err(bad(&format!("{n} is outside {low}-{high}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 =
                    s.parse().ok().filter(|s| *s > 0).ok_or_else(|| bad(&format!("'{s}' is not a step")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (low, high),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, high),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(bad(&format!("{from}-{to} runs backwards")));
        }
        for v in (from..=to).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    if bits == 0 {
        return Err(bad("it allows no value"));
    }
    Ok(bits)
}

/// A task's parameter definitions as stored.
pub fn parameters(t: &TaskRow) -> Vec<api::TaskParameter> {
    serde_json::from_str(&t.parameters).unwrap_or_default()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A pipeline file a task may name: a relative `.yml`/`.yaml` path with no `..`.
fn valid_file(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 255
        && !file.starts_with('/')
        && !file.starts_with('-')
        && (file.ends_with(".yml") || file.ends_with(".yaml"))
        && file.split('/').all(|p| !p.is_empty() && p != ".." && p != ".")
        && !file.chars().any(|c| c.is_control())
}

fn full_match(pattern: &str) -> std::result::Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("'{pattern}' is not a regular expression: {e}"))
}

/// The values a run gets: every definition's given value or default, checked; unknown names and
/// missing required ones refused.
fn values(defs: &[api::TaskParameter], given: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if let Some(unknown) = given.keys().find(|k| !defs.iter().any(|d| &d.name == *k)) {
        let known: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        return Err(WorkError::Invalid(format!(
            "the task has no parameter '{unknown}' (it has: {})",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )));
    }
    let mut out = BTreeMap::new();
    for d in defs {
        let Some(value) = given.get(&d.name).or(d.default_value.as_ref()) else {
            if d.required {
                return Err(WorkError::Invalid(format!("the task needs parameter '{}'", d.name)));
            }
            continue;
        };
        if let Some(p) = &d.regex_pattern
            && !full_match(p).map_err(WorkError::Invalid)?.is_match(value)
        {
            return Err(WorkError::Invalid(format!("parameter '{}' must match {p}: '{value}' does not", d.name)));
        }
        out.insert(d.name.clone(), value.clone());
    }
    Ok(out)
}

impl Server {
    /// A new task of `project`, checked: a name, a branch git takes, a pipeline file path, a
    /// schedule that fires, parameters with valid names, unique, with patterns that compile.
    pub async fn create_task(&self, project: &ProjectRow, new: api::NewTask) -> Result<TaskRow> {
        let name = new.name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(WorkError::Invalid("a task needs a name of 1 to 100 printable characters".into()));
        }
        let branch = new.branch.unwrap_or_else(|| "main".into());
        if !Repo::valid_branch(&branch) {
            return Err(WorkError::Invalid(format!("'{branch}' is not a branch name git takes")));
        }
        let file = new.pipeline_file.unwrap_or_else(|| DEFAULT_FILE.into());
        if !valid_file(&file) {
            return Err(WorkError::Invalid(format!(
                "'{file}' is not a pipeline file: give a path in the repository ending in .yml or .yaml, without '..'"
            )));
        }
        let now = salve_store::now_ms();
        let schedule = new.schedule.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let next_run_ms = match &schedule {
            Some(s) => Some(
                Cron::parse(s)
                    .map_err(WorkError::Invalid)?
                    .next_after(now)
                    .ok_or_else(|| WorkError::Invalid(format!("the schedule '{s}' never fires")))?,
            ),
            None => None,
        };
        let mut seen = Vec::new();
        for p in &new.parameters {
            if !valid_name(&p.name) {
                return Err(WorkError::Invalid(format!(
                    "'{}' is not a parameter name: letters, digits and _, not starting with a digit (it becomes a variable)",
                    p.name
                )));
            }
            if seen.contains(&p.name) {
                return Err(WorkError::Invalid(format!("parameter '{}' is named twice", p.name)));
            }
            seen.push(p.name.clone());
            if let Some(pattern) = &p.regex_pattern {
                let re = full_match(pattern).map_err(WorkError::Invalid)?;
                if let Some(d) = p.default_value.as_ref().filter(|d| !re.is_match(d)) {
                    return Err(WorkError::Invalid(format!(
                        "the default of '{}' ('{d}') does not match {pattern}",
                        p.name
                    )));
                }
            }
        }
        let row = TaskRow {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: project.id.clone(),
            name: name.to_owned(),
            description: new.description,
            branch,
            pipeline_file: file,
            schedule,
            parameters: serde_json::to_string(&new.parameters).unwrap_or_else(|_| "[]".into()),
            paused: false,
            next_run_ms,
            created_ms: now,
            updated_ms: now,
        };
        self.store.create_task(&row).await?;
        Ok(row)
    }

    /// Pauses or resumes a task's schedule (a paused task still runs by hand).
    pub async fn pause_task(&self, task: &TaskRow, paused: bool) -> Result<()> {
        let next = match (&task.schedule, paused) {
            (Some(s), false) => Cron::parse(s).ok().and_then(|c| c.next_after(salve_store::now_ms())),
            _ => None,
        };
        self.store.set_task_paused(&task.id, paused, next).await?;
        Ok(())
    }

    /// Starts a task's workflow now, on its branch and file or those asked for, with its
    /// parameters; the start (or why it could not be made) joins the task's history.
    pub async fn run_task(
        self: &Arc<Self>,
        task: &TaskRow,
        run: api::RunTask,
        scheduled: bool,
    ) -> Result<(TaskTriggerRow, WorkflowRow, salve_store::PipelineRow)> {
        let branch = run.branch.unwrap_or_else(|| task.branch.clone());
        let file = run.pipeline_file.unwrap_or_else(|| task.pipeline_file.clone());
        let mut trigger = TaskTriggerRow {
            id: uuid::Uuid::new_v4().to_string(),
            task_id: task.id.clone(),
            triggered_ms: salve_store::now_ms(),
            scheduled,
            branch: branch.clone(),
            pipeline_file: file.clone(),
            workflow_id: None,
            error: None,
        };
        let started = self.start_task_workflow(task, &branch, &file, &run.parameters, scheduled).await;
        match &started {
            Ok((w, _)) => trigger.workflow_id = Some(w.id.clone()),
            Err(e) => trigger.error = Some(e.to_string()),
        }
        // A refused run by hand is its caller's answer; a scheduled one is kept to be seen.
        if started.is_ok() || scheduled {
            self.store.add_task_trigger(&trigger).await?;
        }
        let (w, p) = started?;
        Ok((trigger, w, p))
    }

    async fn start_task_workflow(
        self: &Arc<Self>,
        task: &TaskRow,
        branch: &str,
        file: &str,
        given: &BTreeMap<String, String>,
        scheduled: bool,
    ) -> Result<(WorkflowRow, salve_store::PipelineRow)> {
        if !Repo::valid_branch(branch) {
            return Err(WorkError::Invalid(format!("'{branch}' is not a branch name git takes")));
        }
        if !valid_file(file) {
            return Err(WorkError::Invalid(format!("'{file}' is not a pipeline file path")));
        }
        let params = values(&parameters(task), given)?;
        let project = self
            .store
            .project(&task.project_id)
            .await?
            .ok_or_else(|| WorkError::NotFound("the task's project was deleted".into()))?;
        let (dir, wanted) = (project.repo_url.clone(), format!("refs/heads/{branch}"));
        let head = tokio::task::spawn_blocking(move || Repo::new(&dir).resolve(&wanted))
            .await
            .map_err(|e| WorkError::Invalid(e.to_string()))?
            .ok_or_else(|| WorkError::NotFound(format!("the repository has no branch {branch}: push it first")))?;
        let trigger = Trigger {
            ref_type: RefKind::Branch,
            label: branch.to_owned(),
            branch: branch.to_owned(),
            sha: head,
            triggered_by: if scheduled { "schedule" } else { "task" }.into(),
            rerun_of: None,
            file: file.to_owned(),
            params,
        };
        self.start_workflow(&project, &trigger).await
    }

    /// Starts the scheduled runs that are due (each taken by one replica).
    pub async fn fire_due_tasks(self: &Arc<Self>) {
        let now = salve_store::now_ms();
        let due = match self.store.due_tasks(now).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot read due tasks: {e}");
                return;
            }
        };
        for task in due {
            let Some(at) = task.next_run_ms else { continue };
            let next = task.schedule.as_deref().and_then(|s| Cron::parse(s).ok()).and_then(|c| c.next_after(now));
            match self.store.take_task_run(&task.id, at, next).await {
                Ok(true) => match self.run_task(&task, api::RunTask::default(), true).await {
                    Ok((_, w, _)) => tracing::info!(task = %task.name, workflow = %w.id, "scheduled task started"),
                    Err(e) => tracing::warn!(task = %task.name, "scheduled task could not start: {e}"),
                },
                Ok(false) => {}
                Err(e) => tracing::error!(task = %task.name, "cannot take a scheduled run: {e}"),
            }
        }
    }

    /// Looks for due scheduled runs every few seconds, and expired artifacts every minute, for
    /// as long as the server runs.
    pub async fn schedule_tasks(self: Arc<Self>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for round in 0u64.. {
            tick.tick().await;
            self.fire_due_tasks().await;
            if round % 12 == 0 {
                self.sweep_artifacts().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// 2026-12-07 (a Monday) 12:34:56 UTC.
    const NOW: i64 = 1_796_646_896_000;

    fn at(day_offset: i64, hour: i64, minute: i64) -> i64 {
        (NOW / DAY + day_offset) * DAY + hour * 3_600_000 + minute * 60_000
    }

    #[test]
    fn now_is_a_monday() {
        assert_eq!(civil(NOW / DAY), (2026, 12, 7));
        assert_eq!((NOW / DAY + 4) % 7, 1);
    }

    #[test]
    fn schedules_fire_when_cron_would() {
        let next = |s: &str| Cron::parse(s).map(|c| c.next_after(NOW));
        assert_eq!(next("* * * * *"), Ok(Some(at(0, 12, 35))));
        assert_eq!(next("0 3 * * *"), Ok(Some(at(1, 3, 0))));
        assert_eq!(next("@hourly"), Ok(Some(at(0, 13, 0))));
        assert_eq!(next("*/15 * * * *"), Ok(Some(at(0, 12, 45))));
        assert_eq!(next("30 12 * * *"), Ok(Some(at(1, 12, 30))), "12:30 has passed today");
        // Fridays (4 days on), by name and by number; Sunday as 0 and as 7.
        assert_eq!(next("0 9 * * fri"), Ok(Some(at(4, 9, 0))));
        assert_eq!(next("0 9 * * 5"), next("0 9 * * FRI"));
        assert_eq!(next("0 0 * * 7"), next("0 0 * * 0"));
        assert_eq!(next("0 0 * * 7"), Ok(Some(at(6, 0, 0))));
        // Day of month and day of week both given: either fires (the 8th is tomorrow).
        assert_eq!(next("0 0 8 * fri"), Ok(Some(at(1, 0, 0))));
        assert_eq!(next("0 0 1 jan *"), Ok(Some(at(25, 0, 0))), "2027-01-01");
        assert_eq!(next("0 0 29 2 *"), Ok(Some(at(25 + 365 + 59, 0, 0))), "2028-02-29");
        assert_eq!(next("0 0 30 2 *"), Ok(None), "never");
        assert_eq!(next("0-10/5 1,2 * * mon-fri"), Ok(Some(at(1, 1, 0))));
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let err = |s: &str| Cron::parse(s).err().unwrap_or_default();
        assert!(err("0 3 * *").contains("give five fields"), "{}", err("0 3 * *"));
        assert!(err("61 * * * *").contains("61 is outside 0-59"));
        assert!(err("* * * * funday").contains("'funday' is not a number"));
        assert!(err("*/0 * * * *").contains("not a step"));
        assert!(err("5-1 * * * *").contains("runs backwards"));
    }

    #[test]
    fn parameters_are_checked_and_defaulted() {
        let defs = vec![
            api::TaskParameter {
                name: "ENV".into(),
                required: true,
                regex_pattern: Some("staging|production".into()),
                ..Default::default()
            },
            api::TaskParameter { name: "DRY_RUN".into(), default_value: Some("true".into()), ..Default::default() },
            api::TaskParameter { name: "NOTE".into(), ..Default::default() },
        ];
        let given = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ok = values(&defs, &given(&[("ENV", "staging")])).map_err(|e| e.to_string());
        assert_eq!(ok, Ok(given(&[("DRY_RUN", "true"), ("ENV", "staging")])));
        let err =
            |pairs: &[(&str, &str)]| values(&defs, &given(pairs)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&[]).contains("needs parameter 'ENV'"));
        assert!(err(&[("ENV", "prod")]).contains("must match staging|production"));
        assert!(err(&[("ENV", "staging"), ("OOPS", "1")]).contains("no parameter 'OOPS' (it has: ENV, DRY_RUN, NOTE)"));
        assert!(valid_file(".semaphore/nightly.yml") && !valid_file("../x.yml") && !valid_file("/etc/x.yml"));
        assert!(valid_name("DRY_RUN") && !valid_name("1X") && !valid_name("A-B"));
    }
}
