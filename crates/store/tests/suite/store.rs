use pretty_assertions::assert_eq;
use salve_store::secrets::{Sealer, SecretData};
use salve_store::{BlockRow, CommandRow, JobRow, PipelineRow, Store};
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
        let w1 = store.create_workflow("w-1", &p.id, "branch", "main", "abc").await.unwrap();
        let w2 = store.create_workflow("w-2", &p.id, "branch", "main", "def").await.unwrap();
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
            promoted_by: None,
            created_ms: 1,
            done_ms: None,
        };
        store.create_pipeline(&pipeline).await.unwrap();
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
