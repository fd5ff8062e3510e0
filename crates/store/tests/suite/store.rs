use pretty_assertions::assert_eq;
use salve_store::secrets::{Sealer, SecretData};
use salve_store::{BlockRow, CommandRow, JobRow, PipelineRow, ProjectRow, Store, StoreError, WorkflowRow};
use sqlx::Connection;

/// A fresh PostgreSQL database for one test, dropped at the end.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn new() -> PgDb {
        let admin = std::env::var("SALVE_TEST_POSTGRES_URL").expect(
            "SALVE_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL (scripts/postgres.sh prints the URL)",
        );
        let name = format!("salve_test_{}", std::process::id() as u64 * 1000 + rand_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        PgDb { admin, name, url }
    }

    async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
        let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn).await;
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) + (salve_store::now_ms() as u64 % 997)
}

async fn each_backend<F, Fut>(f: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&format!("sqlite://{}/salve.db", dir.path().display())).await.unwrap();
    f(sqlite).await;
    // Opening again migrates nothing twice.
    let again = Store::open(&format!("sqlite://{}/salve.db", dir.path().display())).await.unwrap();
    assert!(again.job("none").await.unwrap().is_none());
    let pg = PgDb::new().await;
    f(Store::open(&pg.url).await.unwrap()).await;
    Store::open(&pg.url).await.unwrap();
    pg.drop().await;
}

#[tokio::test]
async fn workflows_pipelines_blocks_jobs_and_commands_round_trip() {
    each_backend(|store| async move {
        let p = store.ensure_project("p-1", "demo", "file:///tmp/demo.git").await.unwrap();
        assert_eq!(store.ensure_project("p-2", "demo", "ignored").await.unwrap(), p);
        let workflow = |id: &str, sha: &str| WorkflowRow {
            id: id.into(),
            project_id: p.id.clone(),
            ref_type: "branch".into(),
            label: "main".into(),
            branch: "main".into(),
            sha: sha.into(),
            ..WorkflowRow::default()
        };
        let w1 = store.create_workflow(&workflow("w-1", "abc")).await.unwrap();
        let w2 = store.create_workflow(&workflow("w-2", "def")).await.unwrap();
        assert_eq!((w1.number, w2.number), (1, 2));
        let pipeline = PipelineRow {
            id: "pl-1".into(),
            workflow_id: w2.id.clone(),
            name: "CI".into(),
            file: ".semaphore/semaphore.yml".into(),
            state: "running".into(),
            result: None,
            result_reason: None,
            error: None,
            created_ms: 1,
            ..PipelineRow::default()
        };
        store.create_pipeline(&pipeline).await.unwrap();
        assert_eq!(store.plan("pl-1").await.unwrap(), None, "a pipeline created without its plan has none");
        let planned = PipelineRow { id: "pl-9".into(), plan: Some("{\"name\":\"CI\"}".into()), ..pipeline.clone() };
        store.create_pipeline(&planned).await.unwrap();
        assert_eq!(store.plan("pl-9").await.unwrap().as_deref(), Some("{\"name\":\"CI\"}"));
        assert_eq!(store.pipeline("pl-9").await.unwrap().unwrap().plan, None, "rows read back leave the plan out");
        let mut block = BlockRow {
            pipeline_id: "pl-1".into(),
            name: "Test".into(),
            state: "running".into(),
            result: None,
            result_reason: None,
        };
        store.set_block(&block).await.unwrap();
        block.state = "done".into();
        block.result = Some("failed".into());
        block.result_reason = Some("test".into());
        store.set_block(&block).await.unwrap();
        assert_eq!(store.blocks("pl-1").await.unwrap(), vec![block]);
        let mut job = JobRow {
            id: "j-1".into(),
            pipeline_id: "pl-1".into(),
            block_name: "Test".into(),
            name: "unit".into(),
            state: "running".into(),
            result: None,
            result_reason: None,
            summary: None,
            log_dir: "/data/jobs/j-1".into(),
            started_ms: Some(5),
            done_ms: None,
        };
        store.set_job(&job).await.unwrap();
        job.state = "done".into();
        job.result = Some("failed".into());
        job.summary = Some("job failed: `make` — exit code 2 ' quoted \" ".into());
        job.done_ms = Some(9);
        store.set_job(&job).await.unwrap();
        assert_eq!(store.job("j-1").await.unwrap(), Some(job.clone()));
        assert_eq!(store.jobs("pl-1").await.unwrap(), vec![job]);
        let commands: Vec<CommandRow> = (0..3)
            .map(|i| CommandRow {
                job_id: "j-1".into(),
                seq: i,
                phase: "main".into(),
                idx: i,
                command: format!("echo {i} ünïcode"),
                started_ms: 10 + i,
                duration_ms: 1,
                exit_code: if i == 2 { None } else { Some(i) },
                first_line: i,
                end_line: i + 1,
            })
            .collect();
        store.set_commands("j-1", &commands).await.unwrap();
        store.set_commands("j-1", &commands).await.unwrap();
        assert_eq!(store.commands("j-1").await.unwrap(), commands);
        store.finish_pipeline("pl-1", "failed", Some("test"), None).await.unwrap();
        // A commit passed before when another pipeline of the same file passed on it.
        let file = ".semaphore/semaphore.yml";
        assert!(!store.passed_before(&p.id, "def", file).await.unwrap());
        store
            .create_pipeline(&PipelineRow { id: "pl-0".into(), state: "running".into(), ..pipeline.clone() })
            .await
            .unwrap();
        store.finish_pipeline("pl-0", "passed", None, None).await.unwrap();
        assert!(store.passed_before(&p.id, "def", file).await.unwrap());
        assert!(!store.passed_before(&p.id, "def", ".semaphore/other.yml").await.unwrap());
        assert!(!store.passed_before(&p.id, "abc", file).await.unwrap());
        let done = store.pipeline("pl-1").await.unwrap().unwrap();
        assert_eq!(
            (done.state.as_str(), done.result.as_deref(), done.result_reason.as_deref()),
            ("done", Some("failed"), Some("test"))
        );
        assert!(done.done_ms.is_some());
    })
    .await;
}

#[tokio::test]
async fn secrets_are_sealed_at_rest() {
    each_backend(|store| async move {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("keys/secrets.key");
        let sealer = Sealer::open_or_create(&key).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let data = SecretData {
            env_vars: vec![("API_TOKEN".into(), "tok-3f9a-very-secret".into())],
            files: vec![(".ssh/id_ed25519".into(), b"-----BEGIN KEY-----\n\xffbinary".to_vec())],
        };
        let sealed = sealer.seal("deploy", &data).unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"tok-3f9a"));
        store.put_secret("deploy", &sealed).await.unwrap();
        let back = store.secret("deploy").await.unwrap().unwrap();
        assert_eq!(Sealer::open_or_create(&key).unwrap().open("deploy", &back).unwrap(), data);
        // Another name, another key or a flipped bit: refused.
        assert!(sealer.open("other", &back).is_err());
        let mut bad = back.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(sealer.open("deploy", &bad).is_err());
        let other = Sealer::open_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("deploy", &back).is_err());
        assert_eq!(store.secret_names().await.unwrap(), vec!["deploy".to_owned()]);
        assert!(store.delete_secret("deploy").await.unwrap());
        assert!(!store.delete_secret("deploy").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn bad_urls_are_explained() {
    let err = Store::open("mysql://x").await.err().unwrap().to_string();
    assert!(err.contains("sqlite://PATH") && err.contains("postgres://"), "{err}");
}

#[tokio::test]
async fn promotions_fire_once_and_queued_pipelines_start_once() {
    each_backend(|store| async move {
        let project = ProjectRow {
            id: "p-1".into(),
            name: "web".into(),
            repo_url: "/data/repos/web.git".into(),
            kind: "hosted".into(),
            ..ProjectRow::default()
        };
        store.create_project(&project).await.unwrap();
        let again = store.create_project(&ProjectRow { id: "p-2".into(), ..project.clone() }).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(store.projects().await.unwrap(), vec![project.clone()]);
        let w = WorkflowRow {
            id: "w-1".into(),
            project_id: "p-1".into(),
            ref_type: "branch".into(),
            label: "main".into(),
            branch: "main".into(),
            sha: "abc".into(),
            ..WorkflowRow::default()
        };
        store.create_workflow(&w).await.unwrap();
        let pipeline = |id: &str, created_ms| PipelineRow {
            id: id.into(),
            workflow_id: "w-1".into(),
            file: ".semaphore/semaphore.yml".into(),
            state: "queuing".into(),
            created_ms,
            ..PipelineRow::default()
        };
        store.create_pipeline(&pipeline("pl-1", 1)).await.unwrap();
        assert!(store.start_pipeline("pl-1").await.unwrap());
        assert!(!store.start_pipeline("pl-1").await.unwrap(), "a pipeline starts once");
        assert!(store.finish_pipeline("pl-1", "failed", Some("test"), None).await.unwrap());
        assert!(!store.finish_pipeline("pl-1", "passed", None, None).await.unwrap(), "and ends once");
        assert_eq!(store.unpromoted().await.unwrap().len(), 1);
        let child = PipelineRow { promotion_of: Some("pl-1".into()), ..pipeline("pl-2", 2) };
        assert!(store.promote("pl-1", std::slice::from_ref(&child)).await.unwrap());
        assert!(!store.promote("pl-1", &[pipeline("pl-3", 3)]).await.unwrap(), "promotions fire once");
        assert!(store.unpromoted().await.unwrap().is_empty());
        let listed = store.project_pipelines("p-1", 10).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|i| i.pipeline.id.as_str()).collect();
        assert_eq!(ids, ["pl-2", "pl-1"]);
        assert_eq!(listed[0].pipeline.promotion_of.as_deref(), Some("pl-1"));
        assert_eq!(listed[0].workflow.branch, "main");
        assert_eq!(listed[0].project, "web");
        assert_eq!(store.pipelines_in_state("queuing").await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn tokens_are_found_by_hash_only() {
    each_backend(|store| async move {
        store.create_token("t-1", "ci", "aa11", None).await.unwrap();
        assert!(store.use_token("bb22").await.unwrap().is_none());
        let t = store.use_token("aa11").await.unwrap().unwrap();
        assert_eq!((t.id.as_str(), t.name.as_str()), ("t-1", "ci"));
        assert!(t.last_used_ms.is_some());
        assert_eq!(store.tokens().await.unwrap().len(), 1);
        assert!(store.delete_token("t-1").await.unwrap());
        assert!(store.use_token("aa11").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn one_heal_per_commit_and_fingerprint_and_one_open_pull_per_head() {
    each_backend(|store| async move {
        let p = store.ensure_project("p-1", "demo", "file:///tmp/demo.git").await.unwrap();
        let heal = |id: &str, fp: &str| salve_store::HealRow {
            id: id.into(),
            project_id: p.id.clone(),
            pipeline_id: "pl-1".into(),
            sha: "abc".into(),
            branch: "main".into(),
            fingerprint: fp.into(),
            created_ms: salve_store::now_ms(),
            ..Default::default()
        };
        let first = store.claim_heal(&heal("h-1", "lint_format:1")).await.unwrap().unwrap();
        assert_eq!(first.state, "running");
        let taken = store.claim_heal(&heal("h-2", "lint_format:1")).await.unwrap().unwrap_err();
        assert_eq!(taken.id, "h-1");
        assert!(store.claim_heal(&heal("h-3", "test_failure:2")).await.unwrap().is_ok());
        assert!(store.finish_heal("h-1", "pushed", "{\"tier\": 1}", Some("selfheal-abc")).await.unwrap());
        assert!(!store.finish_heal("h-1", "failed", "{}", None).await.unwrap(), "done once");
        let h = store.heal("h-1").await.unwrap().unwrap();
        assert_eq!((h.outcome.as_deref(), h.report.as_str()), (Some("pushed"), "{\"tier\": 1}"));
        assert_eq!(store.heals(Some(&p.id), Some("main"), 0, 10).await.unwrap().len(), 2);
        assert_eq!(store.heals(None, Some("other"), 0, 10).await.unwrap().len(), 0);

        let pull = |id: &str, head: &str| salve_store::PullRow {
            id: id.into(),
            project_id: p.id.clone(),
            head: head.into(),
            base: "main".into(),
            title: "t".into(),
            created_by: "test".into(),
            created_ms: salve_store::now_ms(),
            ..Default::default()
        };
        assert_eq!(store.heal("h-1").await.unwrap().unwrap().pull_request, None);
        let one = store.open_pull(&pull("r-1", "selfheal-abc")).await.unwrap().unwrap();
        assert_eq!(one.number, 1);
        // The loop is a join: the heal knows its branch and the pull request opened from it.
        let linked = store.heal_of_branch(&p.id, "selfheal-abc").await.unwrap().unwrap();
        assert_eq!((linked.id.as_str(), linked.pull_request), ("h-1", Some(1)));
        assert!(store.heal_of_branch(&p.id, "selfheal-zzz").await.unwrap().is_none());
        let of_pipeline: Vec<String> =
            store.heals_of_pipeline(&first.pipeline_id).await.unwrap().into_iter().map(|h| h.id).collect();
        assert!(of_pipeline.contains(&"h-1".to_owned()), "{of_pipeline:?}");
        let again = store.open_pull(&pull("r-2", "selfheal-abc")).await.unwrap().unwrap_err();
        assert_eq!(again.id, "r-1");
        assert_eq!(store.open_pull(&pull("r-3", "feature")).await.unwrap().unwrap().number, 2);
        store.end_pull("r-1", Some("def")).await.unwrap();
        assert!(store.end_pull("r-1", None).await.is_err(), "not open any more");
        // Merged: the same head may have a new one.
        assert_eq!(store.open_pull(&pull("r-4", "selfheal-abc")).await.unwrap().unwrap().number, 3);
        assert_eq!(store.pulls(Some(&p.id), Some("open"), 10).await.unwrap().len(), 2);
        assert_eq!(store.pull(&p.id, 1).await.unwrap().unwrap().merged_sha.as_deref(), Some("def"));
    })
    .await;
}

#[tokio::test]
async fn agent_types_and_agents_on_both_backends() {
    each_backend(|store| async move {
        let made = store.create_agent_type("s1-pool", "hash-reg").await.unwrap();
        assert_eq!((made.name.as_str(), made.disabled_ms), ("s1-pool", None));
        assert!(matches!(store.create_agent_type("s1-pool", "hash-other").await, Err(StoreError::Conflict(_))));
        assert_eq!(store.agent_type_by_token("hash-reg").await.unwrap().map(|t| t.name), Some("s1-pool".into()));
        assert!(store.agent_type_by_token("hash-none").await.unwrap().is_none());
        let agent = |id: &str, registered_ms| salve_store::AgentRow {
            id: id.into(),
            agent_type: "s1-pool".into(),
            name: format!("box-{id}"),
            version: "1".into(),
            slots: 2,
            registered_ms,
            last_seen_ms: registered_ms,
            disconnected_ms: None,
        };
        store.register_agent(&agent("a", 10), "hash-a").await.unwrap();
        store.register_agent(&agent("b", 20), "hash-b").await.unwrap();
        let seen = store.agent_seen("hash-a").await.unwrap().unwrap();
        assert!(seen.last_seen_ms > 10, "a heartbeat marks the agent seen now");
        assert!(store.disconnect_agent("b").await.unwrap());
        assert!(!store.disconnect_agent("b").await.unwrap(), "once");
        assert!(store.agent_seen("hash-b").await.unwrap().is_none(), "a disconnected agent is not seen");
        let ids: Vec<String> = store.agents().await.unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(ids, ["a", "b"], "connected agents first");
        assert!(store.disable_agent_type("s1-pool").await.unwrap());
        assert!(!store.disable_agent_type("s1-pool").await.unwrap());
        assert!(store.agent_type_by_token("hash-reg").await.unwrap().is_none(), "a disabled type registers none");
        assert!(store.agent_seen("hash-a").await.unwrap().is_none(), "a disabled type's agents are cut off");
    })
    .await;
}

#[tokio::test]
async fn agent_jobs_are_claimed_once_leased_lost_and_finished_once_on_both_backends() {
    use salve_store::agent_jobs::{AGENT_LOST, Finish};
    each_backend(|store| async move {
        let p = store.ensure_project("p-1", "demo", "file:///tmp/demo.git").await.unwrap();
        let w = WorkflowRow {
            id: "w-1".into(),
            project_id: p.id.clone(),
            ref_type: "branch".into(),
            label: "main".into(),
            branch: "main".into(),
            sha: "abc".into(),
            ..WorkflowRow::default()
        };
        store.create_workflow(&w).await.unwrap();
        let pipeline = PipelineRow {
            id: "pl-1".into(),
            workflow_id: "w-1".into(),
            name: "CI".into(),
            file: ".semaphore/semaphore.yml".into(),
            state: "running".into(),
            created_ms: 1,
            ..PipelineRow::default()
        };
        store.create_pipeline(&pipeline).await.unwrap();
        store.create_agent_type("s1-pool", "hash-reg").await.unwrap();
        let agent = |id: &str| salve_store::AgentRow {
            id: id.into(),
            agent_type: "s1-pool".into(),
            name: format!("box-{id}"),
            version: "1".into(),
            slots: 3,
            registered_ms: 1,
            last_seen_ms: 1,
            disconnected_ms: None,
        };
        let agents: Vec<_> = (0..4).map(|i| agent(&format!("a{i}"))).collect();
        for a in &agents {
            store.register_agent(a, &format!("hash-{}", a.id)).await.unwrap();
        }
        for i in 0..10 {
            let id = format!("j-{i}");
            let job = JobRow {
                id: id.clone(),
                pipeline_id: "pl-1".into(),
                block_name: "Test".into(),
                name: id.clone(),
                state: "running".into(),
                log_dir: format!("/data/jobs/{id}"),
                ..JobRow::default()
            };
            store.set_job(&job).await.unwrap();
            store.enqueue_agent_job(&id, "pl-1", "s1-pool", b"sealed").await.unwrap();
        }
        let depth = store.agent_queue_depth().await.unwrap();
        assert_eq!((depth[0].agent_type.as_str(), depth[0].queued), ("s1-pool", 10));
        // Four agents claim at once, over and over: each job goes to one agent, and no agent
        // holds more than its slots.
        let mut claims = tokio::task::JoinSet::new();
        for a in agents.iter().flat_map(|a| (0..4).map(move |_| a.clone())) {
            let store = store.clone();
            claims.spawn(async move { store.claim_agent_job(&a, 60_000).await.unwrap().map(|c| (a.id.clone(), c)) });
        }
        let mut claimed: Vec<_> = claims.join_all().await.into_iter().flatten().collect();
        claimed.sort_by(|a, b| a.1.row.job_id.cmp(&b.1.row.job_id));
        let mut ids: Vec<&str> = claimed.iter().map(|(_, c)| c.row.job_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!((claimed.len(), ids.len()), (10, 10), "every job claimed exactly once");
        for a in &agents {
            assert!(claimed.iter().filter(|(id, _)| *id == a.id).count() <= 3, "at most the agent's slots");
        }
        assert_eq!(claimed[0].1.payload, b"sealed");
        assert!(store.agent_queue_depth().await.unwrap().is_empty());
        // A report is taken once, from the agent holding the attempt.
        let (holder, c) = &claimed[0];
        let job = c.row.job_id.clone();
        assert_eq!(store.finish_agent_job(&job, 1, "nobody", "{}", "passed", None).await.unwrap(), Finish::NotHeld);
        assert_eq!(store.finish_agent_job(&job, 2, holder, "{}", "passed", None).await.unwrap(), Finish::NotHeld);
        assert_eq!(store.finish_agent_job(&job, 1, holder, "{}", "passed", None).await.unwrap(), Finish::Stored);
        assert_eq!(store.finish_agent_job(&job, 1, holder, "{}", "passed", None).await.unwrap(), Finish::Twice);
        assert!(store.hold_agent_job(&job, 1, holder, 60_000).await.unwrap().is_none(), "a done job is no one's");
        // A lapsed lease loses the attempt: queued again with a log folder of its own, then
        // failed when lost again. Each change happens once, however many replicas reap.
        let (holder, c) = &claimed[1];
        let lost_job = c.row.job_id.clone();
        assert!(store.release_agent_jobs(holder).await.unwrap() >= 1);
        let (r1, r2) = tokio::join!(store.reap_lost_agent_jobs("lost"), store.reap_lost_agent_jobs("lost"));
        let mut lost: Vec<_> = r1.unwrap().into_iter().chain(r2.unwrap()).filter(|l| l.job_id == lost_job).collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert!(lost.remove(0).requeued);
        assert!(
            store.hold_agent_job(&lost_job, 1, holder, 60_000).await.unwrap().is_none(),
            "the late agent is fenced"
        );
        assert_eq!(store.job(&lost_job).await.unwrap().unwrap().log_dir, format!("/data/jobs/{lost_job}/attempt-2"));
        let other = agents.iter().find(|a| a.id != *holder).unwrap();
        let _ = store.release_agent_jobs(&other.id).await.unwrap();
        store.reap_lost_agent_jobs("lost").await.unwrap();
        let fresh = salve_store::AgentRow { slots: 64, ..agent("fresh") };
        store.register_agent(&fresh, "hash-fresh").await.unwrap();
        let mut again = Vec::new();
        while let Some(c) = store.claim_agent_job(&fresh, 0).await.unwrap() {
            again.push(c);
        }
        let second = again.iter().find(|c| c.row.job_id == lost_job).expect("the lost job is claimed again");
        assert_eq!(second.row.attempt, 2);
        assert_eq!(second.log_dir, format!("/data/jobs/{lost_job}/attempt-2"));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let lost = store.reap_lost_agent_jobs("{\"by\":\"lost\"}").await.unwrap();
        assert!(lost.iter().any(|l| l.job_id == lost_job && !l.requeued), "{lost:?}");
        let row = store.agent_job(&lost_job).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.report.as_deref()), ("done", Some("{\"by\":\"lost\"}")));
        let attempts: Vec<_> = store
            .job_attempts("pl-1")
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.job_id == lost_job)
            .map(|a| (a.attempt, a.agent_id.unwrap_or_default(), a.result_reason.unwrap_or_default()))
            .collect();
        assert_eq!(attempts, [(1, holder.clone(), AGENT_LOST.into()), (2, "fresh".into(), AGENT_LOST.into())]);
        // A stop ends a queued job at once and marks a claimed one for its agent.
        store
            .set_job(&JobRow {
                id: "j-q".into(),
                pipeline_id: "pl-1".into(),
                block_name: "Test".into(),
                name: "q".into(),
                state: "running".into(),
                log_dir: "/data/jobs/j-q".into(),
                ..JobRow::default()
            })
            .await
            .unwrap();
        store.enqueue_agent_job("j-q", "pl-1", "s1-pool", b"x").await.unwrap();
        assert!(store.stop_agent_job("j-q", "user", "stopped").await.unwrap());
        assert_eq!(store.agent_job("j-q").await.unwrap().unwrap().state, "done");
        // A job still running: not the one reported above, not one of the released agents'.
        let (runner, c) = claimed.iter().find(|(a, c)| a != holder && *a != other.id && c.row.job_id != job).unwrap();
        let running = &c.row.job_id;
        assert!(!store.stop_agent_job(running, "user", "stopped").await.unwrap());
        let held = store.hold_agent_job(running, 1, runner, 60_000).await.unwrap().unwrap();
        assert_eq!(held.row.stop_reason.as_deref(), Some("user"));
        assert!(store.agent_holds_project(runner, "p-1").await.unwrap());
        assert!(!store.agent_holds_project("nobody", "p-1").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn tasks_keep_their_history_and_a_scheduled_run_is_taken_once_on_both_backends() {
    use salve_store::{TaskRow, TaskTriggerRow};
    each_backend(|store| async move {
        let p = store.ensure_project("p-t", "tasks", "file:///tmp/tasks.git").await.unwrap();
        let task = TaskRow {
            id: "t-1".into(),
            project_id: p.id.clone(),
            name: "nightly".into(),
            branch: "main".into(),
            pipeline_file: ".semaphore/nightly.yml".into(),
            schedule: Some("0 3 * * *".into()),
            parameters: "[]".into(),
            next_run_ms: Some(1_000),
            created_ms: 1,
            updated_ms: 1,
            ..TaskRow::default()
        };
        store.create_task(&task).await.unwrap();
        assert!(
            store.create_task(&TaskRow { id: "t-2".into(), ..task.clone() }).await.is_err(),
            "one name per project"
        );
        assert_eq!(store.task("t-1").await.unwrap().as_ref(), Some(&task));
        assert_eq!(store.task_named(&p.id, "nightly").await.unwrap().map(|t| t.id), Some("t-1".into()));
        assert!(store.due_tasks(999).await.unwrap().is_empty());
        assert_eq!(store.due_tasks(1_000).await.unwrap().len(), 1);
        // Many replicas see it due; one takes the run.
        let takes = futures_take(&store).await;
        assert_eq!(takes, 1, "a due run is taken once");
        assert!(store.due_tasks(5_000).await.unwrap().is_empty(), "moved on to its next run");
        // Paused: never due; resumed with a next run.
        assert!(store.set_task_paused("t-1", true, None).await.unwrap());
        assert!(store.due_tasks(i64::MAX).await.unwrap().is_empty());
        assert!(store.set_task_paused("t-1", false, Some(10_000)).await.unwrap());
        assert_eq!(store.due_tasks(10_000).await.unwrap().len(), 1);
        for (i, workflow) in [(1, Some("w-a")), (2, None)] {
            store
                .add_task_trigger(&TaskTriggerRow {
                    id: format!("tr-{i}"),
                    task_id: "t-1".into(),
                    triggered_ms: i,
                    scheduled: i == 1,
                    branch: "main".into(),
                    pipeline_file: ".semaphore/nightly.yml".into(),
                    workflow_id: workflow.map(str::to_owned),
                    error: workflow.is_none().then(|| "no branch main".into()),
                })
                .await
                .unwrap();
        }
        let history = store.task_triggers("t-1", 10).await.unwrap();
        assert_eq!(history.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["tr-2", "tr-1"]);
        assert!(history[1].scheduled && history[0].error.is_some());
        assert!(store.delete_task("t-1").await.unwrap());
        assert!(store.task("t-1").await.unwrap().is_none() && store.task_triggers("t-1", 10).await.unwrap().is_empty());
    })
    .await;
}

/// Eight takers at once for the run due at 1000; how many won.
async fn futures_take(store: &salve_store::Store) -> usize {
    let mut handles = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        handles.push(tokio::spawn(async move { s.take_task_run("t-1", 1_000, Some(86_400_000)).await.unwrap() }));
    }
    let mut won = 0;
    for h in handles {
        won += usize::from(h.await.unwrap());
    }
    won
}
