//! `heal::heal` against a fake `Ci`: the decisions made before any command runs (never a heal
//! branch, the daily and open-pull-request caps, one heal per failure, a branch that moved on,
//! a machine that lacks a tool), each recorded on the CI side exactly once.

use std::cell::RefCell;

use salve_contract::HealOutcome;
use salve_heal::{Ci, Claimed, FailedJob, Failure, Options, heal};
use salve_heal::{CiError, HealReport};
use salve_logs::classify::Class;

/// A CI server in memory that records what the heal asked and told it.
struct FakeCi {
    failure: Failure,
    heals_today: usize,
    open_pulls: usize,
    taken_by: Option<String>,
    latest_sha: Option<String>,
    claims: RefCell<Vec<String>>,
    finished: RefCell<Vec<(String, String, HealReport)>>,
}

impl FakeCi {
    fn new(failure: Failure) -> FakeCi {
        FakeCi {
            failure,
            heals_today: 0,
            open_pulls: 0,
            taken_by: None,
            latest_sha: None,
            claims: RefCell::new(Vec::new()),
            finished: RefCell::new(Vec::new()),
        }
    }
}

impl Ci for FakeCi {
    fn failure(&self) -> Result<Failure, CiError> {
        Ok(self.failure.clone())
    }
    fn claim(&self, _: &Failure, fingerprint: &str) -> Result<Claimed, CiError> {
        self.claims.borrow_mut().push(fingerprint.to_owned());
        Ok(match &self.taken_by {
            Some(other) => Claimed::Taken(other.clone()),
            None => Claimed::Mine("heal-1".into()),
        })
    }
    fn finish(&self, heal_id: &str, outcome: HealOutcome, report: &HealReport) -> Result<(), CiError> {
        self.finished.borrow_mut().push((heal_id.to_owned(), outcome.as_str().to_owned(), report.clone()));
        Ok(())
    }
    fn latest_sha(&self, _: &str) -> Result<Option<String>, CiError> {
        Ok(self.latest_sha.clone())
    }
    fn heals_since(&self, _: &str, _: i64) -> Result<usize, CiError> {
        Ok(self.heals_today)
    }
    fn open_heal_pulls(&self) -> Result<usize, CiError> {
        Ok(self.open_pulls)
    }
    fn job_log(&self, _: &str, _: usize) -> Result<String, CiError> {
        Ok(String::new())
    }
}

fn failure(branch: &str, class: Class) -> Failure {
    Failure {
        pipeline_id: "p-1".into(),
        project: "demo".into(),
        sha: "1111111111111111111111111111111111111111".into(),
        branch: branch.into(),
        file: ".semaphore/semaphore.yml".into(),
        passed_before: false,
        jobs: vec![FailedJob {
            id: "j-1".into(),
            name: "test".into(),
            class,
            fingerprint: "f".into(),
            failing_command: "make test".into(),
            excerpt: "make: gcc: No such file or directory".into(),
            rerun: None,
        }],
    }
}

/// Runs the heal in an empty folder (no salve.toml: the defaults).
fn run(ci: &FakeCi) -> salve_heal::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let say = |_: &str| {};
    let opts = Options {
        repo: dir.path().to_path_buf(),
        scratch: dir.path().join("scratch"),
        env: Vec::new(),
        writable: Vec::new(),
        no_sandbox: true,
        push_url: String::new(),
        push_auth: None,
        push_secret: None,
        agent_command: None,
        say: &say,
    };
    heal(ci, &opts)
}

#[test]
fn a_heal_branch_is_never_healed_and_nothing_is_claimed() {
    let ci = FakeCi::new(failure("selfheal-abc", Class::TestFailure));
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Skipped, "{}", o.summary);
    assert!(ci.claims.borrow().is_empty() && ci.finished.borrow().is_empty());
}

#[test]
fn the_daily_cap_and_the_open_pull_request_cap_stop_a_heal_before_its_claim() {
    let mut ci = FakeCi::new(failure("main", Class::TestFailure));
    ci.heals_today = 3;
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Skipped);
    assert!(o.summary.contains("max_attempts_per_day"), "{}", o.summary);
    let mut ci = FakeCi::new(failure("main", Class::TestFailure));
    ci.open_pulls = 5;
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Skipped);
    assert!(o.summary.contains("max_open_prs"), "{}", o.summary);
    assert!(ci.claims.borrow().is_empty());
}

#[test]
fn a_failure_with_a_heal_already_is_left_to_it() {
    let mut ci = FakeCi::new(failure("main", Class::TestFailure));
    ci.taken_by = Some("heal-0".into());
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Skipped);
    assert!(o.summary.contains("heal-0"), "{}", o.summary);
    assert_eq!(ci.claims.borrow().len(), 1);
    assert!(ci.finished.borrow().is_empty(), "the other heal records its own outcome");
}

#[test]
fn a_branch_that_moved_on_supersedes_the_heal_and_it_is_recorded_once() {
    let mut ci = FakeCi::new(failure("main", Class::TestFailure));
    ci.latest_sha = Some("2222222222222222222222222222222222222222".into());
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Superseded, "{}", o.summary);
    let finished = ci.finished.borrow();
    assert_eq!(finished.len(), 1);
    assert_eq!((finished[0].0.as_str(), finished[0].1.as_str()), ("heal-1", "superseded"));
    assert_eq!(finished[0].2.failed_pipeline, "p-1");
}

#[test]
fn a_machine_that_lacks_a_tool_is_not_healed_by_a_change() {
    let ci = FakeCi::new(failure("main", Class::Environment));
    let o = run(&ci);
    assert_eq!(o.outcome, HealOutcome::Skipped, "{}", o.summary);
    assert!(o.summary.contains("lacks a tool"), "{}", o.summary);
    let finished = ci.finished.borrow();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].2.tiers[0].name, "classify", "{:?}", finished[0].2);
}
