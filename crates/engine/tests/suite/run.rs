use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use salve_engine::{
    Context, Engine, Event, Executor, GitContext, Local, NoSecrets, Observer, PipelineControl, PipelineRun, RefKind,
    RunResult,
};
use salve_pipeline::when::NoFunctions;
use salve_pipeline::{Mode, NoFiles, Plan, analyze};
use salve_runner::{JobControl, JobOutcome, JobResult, JobSpec, Sandbox, StopReason};

pub fn plan(yaml: &str) -> Plan {
    let a = analyze(".semaphore/semaphore.yml", yaml.as_bytes(), &NoFiles, &BTreeMap::new(), Mode::Compile);
    assert!(!a.has_errors(), "{:?}", a.diagnostics);
    a.plan.unwrap()
}

fn context(branch: &str) -> Context {
    Context {
        project_name: "p".into(),
        project_id: "00000000-0000-0000-0000-000000000001".into(),
        organization_id: "00000000-0000-0000-0000-000000000002".into(),
        organization_url: "http://localhost".into(),
        workflow_id: "00000000-0000-0000-0000-000000000003".into(),
        workflow_number: 7,
        pipeline_id: "00000000-0000-0000-0000-000000000004".into(),
        artefact_ids: vec!["a0".into(), "a1".into()],
        promoted_by: Some("auto-promotion".into()),
        triggered_by: "me".into(),
        triggered_by_manual_run: false,
        parameters: vec![("LAYER".into(), "parameter".into()), ("DEPLOY_TO".into(), "staging".into())],
        git: GitContext {
            provider: "local".into(),
            url: "file:///nowhere".into(),
            repo_name: "p".into(),
            repo_slug: "local/p".into(),
            sha: "0123456789abcdef0123456789abcdef01234567".into(),
            ref_type: RefKind::Branch,
            label: branch.into(),
            target_branch: None,
            pr_branch: None,
            pr_sha: None,
            pr_name: None,
            commit_range: String::new(),
            commit_author: "a".into(),
            committer: "c".into(),
        },
    }
}

#[derive(Default)]
struct Events(Mutex<Vec<Event>>);
impl Observer for Events {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

fn run(plan: &Plan, ctx: &Context, control: &PipelineControl) -> (PipelineRun, tempfile::TempDir) {
    run_observed(plan, ctx, control, &Events::default())
}

fn run_observed(
    plan: &Plan,
    ctx: &Context,
    control: &PipelineControl,
    events: &dyn Observer,
) -> (PipelineRun, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine {
        jobs_dir: dir.path().to_owned(),
        parallel: 4,
        sandbox: Sandbox::none(),
        toolbox: None,
        writable: Vec::new(),
        readable: Vec::new(),
        run_containers: true,
        os_images: Default::default(),
        extra_env: vec![("SALVE_EXTRA".into(), "x".into())],
        secret_env: vec![("SALVE_TOKEN".into(), "tok-secret-value".into())],
        secrets: &NoSecrets,
        functions: &NoFunctions,
        observer: events,
        executor: &Local,
        prior: &salve_engine::Fresh,
    };
    (engine.run(plan, ctx, control), dir)
}

/// Hands jobs to no machine: records which machine type each job asked for and answers with
/// the result `fail` names.
struct Recording {
    asked: Mutex<Vec<String>>,
    fail: &'static str,
}

impl Executor for Recording {
    fn run(&self, machine_type: &str, spec: &JobSpec, _: &JobControl) -> Result<JobOutcome, String> {
        self.asked.lock().unwrap().push(machine_type.to_owned());
        let failed = spec.commands.iter().any(|c| c.contains(self.fail));
        Ok(JobOutcome {
            result: if failed { JobResult::Failed } else { JobResult::Passed },
            stop_reason: None,
            failure: None,
            summary: if failed { "exit code 1".into() } else { "passed".into() },
            commands: Vec::new(),
            started_ms: 0,
            finished_ms: 0,
            log_lines: 0,
            log_bytes: 0,
        })
    }
}

/// The engine decides what runs when; where a job runs is its executor's: each job goes to it
/// with its block's machine type (a block's own agent, else the pipeline's), and the outcome it
/// reports is the job's.
#[test]
fn jobs_go_to_the_executor_with_their_blocks_machine_type() {
    let plan = plan(
        "version: v1.0\nname: P\nagent:\n  machine:\n    type: e1-standard-2\n    os_image: ubuntu2004\nblocks:\n  - name: Build\n    task:\n      jobs:\n        - name: compile\n          commands:\n            - make\n  - name: Gpu\n    task:\n      agent:\n        machine:\n          type: s1-gpu\n      jobs:\n        - name: train\n          commands:\n            - train --fail-here\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let executor = Recording { asked: Mutex::new(Vec::new()), fail: "--fail-here" };
    let engine = Engine {
        jobs_dir: dir.path().to_owned(),
        parallel: 2,
        sandbox: Sandbox::none(),
        toolbox: None,
        writable: Vec::new(),
        readable: Vec::new(),
        run_containers: true,
        os_images: Default::default(),
        extra_env: Vec::new(),
        secret_env: Vec::new(),
        secrets: &NoSecrets,
        functions: &NoFunctions,
        observer: &Events::default(),
        executor: &executor,
        prior: &salve_engine::Fresh,
    };
    let run = engine.run(&plan, &context("main"), &PipelineControl::new());
    assert_eq!(*executor.asked.lock().unwrap(), ["e1-standard-2", "s1-gpu"]);
    assert_eq!(run.result, RunResult::Failed);
    assert_eq!((run.blocks[0].result, run.blocks[1].result), (RunResult::Passed, RunResult::Failed));
}

fn log(run: &PipelineRun, block: usize, job: usize) -> String {
    let j = &run.blocks[block].jobs[job];
    String::from_utf8_lossy(&std::fs::read(j.dir.join("log")).unwrap()).into_owned()
}

const HEAD: &str = "version: v1.0\nname: P\nagent:\n  machine:\n    type: e1-standard-2\n";

#[test]
fn pipeline_time_limit_stops_everything() {
    let mut p = plan(&format!(
        "{HEAD}blocks:\n  - name: Slow\n    task:\n      jobs:\n        - commands: [sleep 30]\n  - name: Later\n    task:\n      jobs:\n        - commands: [echo later]\n"
    ));
    // The smallest limit the language allows is a minute; a zero limit exercises the same path.
    p.execution_time_limit_minutes = 0;
    let t = Instant::now();
    let (r, _dir) = run(&p, &context("main"), &PipelineControl::new());
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(r.result_reason.as_deref(), Some("timeout"));
    assert!(matches!(r.result, RunResult::Stopped | RunResult::Canceled), "{:?}", r.result);
    assert_eq!(r.blocks[1].result, RunResult::Canceled);
}

#[test]
fn stop_from_outside_and_after_pipeline_variables() {
    let p = plan(&format!(
        "{HEAD}blocks:\n  - name: B\n    task:\n      jobs:\n        - commands: [echo started, sleep 30]\nafter_pipeline:\n  task:\n    jobs:\n      - name: report\n        commands:\n          - echo \"after $SEMAPHORE_PIPELINE_RESULT/$SEMAPHORE_PIPELINE_RESULT_REASON in $SEMAPHORE_BLOCK_NAME\"\n"
    ));
    let control = PipelineControl::new();
    let stopper = control.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        stopper.stop(StopReason::User);
    });
    let (r, _dir) = run(&p, &context("main"), &control);
    t.join().unwrap();
    assert_eq!((r.result, r.result_reason.as_deref()), (RunResult::Stopped, Some("user")));
    assert_eq!(r.blocks[0].jobs[0].result, JobResult::Stopped);
    let after = r.after_pipeline.as_ref().unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(after.jobs[0].dir.join("log")).unwrap()).into_owned();
    assert!(text.contains("after stopped/user in after_pipeline"), "{text}");
}

#[test]
fn variables_follow_semaphores_export_order() {
    let p = plan(&format!(
        "{HEAD}global_job_config:\n  env_vars:\n    - name: LAYER\n      value: global\nblocks:\n  - name: B\n    task:\n      env_vars:\n        - name: LAYER\n          value: task\n      jobs:\n        - name: J\n          env_vars:\n            - name: LAYER\n              value: job\n          commands:\n            - echo \"layer=$LAYER extra=$SALVE_EXTRA promoted=$SEMAPHORE_PIPELINE_PROMOTION/$SEMAPHORE_PIPELINE_PROMOTED_BY chain=$SEMAPHORE_PIPELINE_0_ARTEFACT_ID,$SEMAPHORE_PIPELINE_1_ARTEFACT_ID,$SEMAPHORE_PIPELINE_ARTEFACT_ID number=$SEMAPHORE_WORKFLOW_NUMBER deploy=$DEPLOY_TO\"\n"
    ));
    let (r, _dir) = run(&p, &context("main"), &PipelineControl::new());
    assert_eq!(r.result, RunResult::Passed);
    let text = log(&r, 0, 0);
    assert!(
        text.contains("layer=job extra=x promoted=true/auto-promotion chain=a0,a1,a1 number=7 deploy=staging"),
        "{text}"
    );
}

#[test]
fn skip_run_and_filters_decide_before_anything_runs() {
    let p = plan(&format!(
        "{HEAD}blocks:\n  - name: Skipped\n    skip:\n      when: \"branch = 'main'\"\n    task:\n      jobs:\n        - commands: [exit 1]\n  - name: NotRun\n    run:\n      when: \"branch = 'release'\"\n    task:\n      jobs:\n        - commands: [exit 1]\n  - name: Runs\n    task:\n      jobs:\n        - commands: [echo ran]\n"
    ));
    let (r, _dir) = run(&p, &context("main"), &PipelineControl::new());
    assert_eq!(r.result, RunResult::Passed);
    let reasons: Vec<_> = r.blocks.iter().map(|b| (b.result, b.result_reason.clone())).collect();
    assert_eq!(
        reasons,
        [
            (RunResult::Passed, Some("skipped".into())),
            (RunResult::Passed, Some("skipped".into())),
            (RunResult::Passed, None)
        ]
    );
    let (r, _dir) = run(&p, &context("release"), &PipelineControl::new());
    // Not skipped on another branch: the first block fails and the others (implicitly after
    // it) are canceled.
    assert_eq!(r.result, RunResult::Failed);
    let results: Vec<_> = r.blocks.iter().map(|b| b.result).collect();
    assert_eq!(results, [RunResult::Failed, RunResult::Canceled, RunResult::Canceled]);
}

#[test]
fn one_job_stopped_the_others_go_on() {
    let p = plan(&format!(
        "{HEAD}blocks:\n  - name: B\n    task:\n      jobs:\n        - name: slow\n          commands: [sleep 30]\n        - name: quick\n          commands: [sleep 1]\n  - name: After\n    task:\n      jobs:\n        - commands: [echo never]\n"
    ));
    let control = PipelineControl::new();
    let stopper = control.clone();
    struct StopSlow(PipelineControl);
    impl Observer for StopSlow {
        fn event(&self, e: &Event) {
            if let Event::JobStarted { job, job_id, .. } = e
                && job == "slow"
            {
                assert!(self.0.stop_job(job_id));
            }
        }
    }
    let t = Instant::now();
    let (r, _dir) = run_observed(&p, &context("main"), &control, &StopSlow(stopper));
    assert!(t.elapsed() < Duration::from_secs(20));
    let jobs = &r.blocks[0].jobs;
    assert_eq!((jobs[0].result, jobs[0].result_reason.as_deref()), (JobResult::Stopped, Some("user")));
    assert_eq!(jobs[1].result, JobResult::Passed, "the other job ran to its end");
    assert_eq!(
        (r.blocks[0].result, r.result, r.result_reason.as_deref()),
        (RunResult::Stopped, RunResult::Stopped, Some("user"))
    );
    assert_eq!(r.blocks[1].result, RunResult::Canceled);
    assert!(!PipelineControl::new().stop_job(&jobs[0].id), "no pipeline runs under a fresh control");
}
