//! `sem-service start|stop|status SERVICE [VERSION] [--username=U] [--password=P] [--db=D]`
//! (Semaphore's service helper): runs the real server of a database or cache inside the job,
//! on its usual port of the job's own 127.0.0.1, with Semaphore's defaults (user `postgres` or
//! `root`, no password), and returns once it accepts connections. Semaphore pulls an image; Salve
//! runs the server the machine has installed (Debian's `postgresql`, `mariadb-server`,
//! `redis-server`, `memcached`, or `$SALVE_TOOLCHAINS/<service>/<version>/bin`). Its data lives in the job's
//! private `/tmp`, and it ends with the job (the sandbox's PID namespace ends with it).
//!
//! A job has a loopback of its own only when it has a network namespace of its own
//! (`SALVE_JOB_NETWORK` is `own` or `none`); on the host's network the service would collide with
//! other jobs' and be theirs to reach, so sem-service refuses and says how to fix it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env;
use crate::sem_version::{choose_version, compare_versions, subdirs, system_version, which};

pub(crate) const USAGE: &str =
    "Usage: sem-service start SERVICE [VERSION] [--username=USER] [--password=PASSWORD] [--db=NAME]
       sem-service stop SERVICE
       sem-service status SERVICE
Runs SERVICE (postgres, postgis, mysql, redis, memcached, rabbitmq; mongodb, elasticsearch and
opensearch are named, but Salve cannot run them from installed servers yet) from this machine's installed servers on
its usual port of the job's own 127.0.0.1, until the job ends.";

/// How long a service may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Postgis,
    Redis,
    Memcached,
    Mysql,
    Mongodb,
    Rabbitmq,
    Elasticsearch,
    Opensearch,
}

impl Kind {
    fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "postgres" | "postgresql" => Kind::Postgres,
            "postgis" => Kind::Postgis,
            "redis" => Kind::Redis,
            "memcached" => Kind::Memcached,
            "mysql" | "mariadb" => Kind::Mysql,
            "mongodb" | "mongo" => Kind::Mongodb,
            "rabbitmq" => Kind::Rabbitmq,
            "elasticsearch" => Kind::Elasticsearch,
            "opensearch" => Kind::Opensearch,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Postgis => "postgis",
            Kind::Redis => "redis",
            Kind::Memcached => "memcached",
            Kind::Mysql => "mysql",
            Kind::Mongodb => "mongodb",
            Kind::Rabbitmq => "rabbitmq",
            Kind::Elasticsearch => "elasticsearch",
            Kind::Opensearch => "opensearch",
        }
    }

    fn port(self) -> u16 {
        match self {
            Kind::Postgres | Kind::Postgis => 5432,
            Kind::Redis => 6379,
            Kind::Memcached => 11211,
            Kind::Mysql => 3306,
            Kind::Mongodb => 27017,
            Kind::Rabbitmq => 5672,
            Kind::Elasticsearch | Kind::Opensearch => 9200,
        }
    }

    /// The program that is the server, and the Debian package that has it.
    fn server(self) -> (&'static str, &'static str) {
        match self {
            Kind::Postgres => ("postgres", "postgresql"),
            Kind::Postgis => ("postgres", "postgresql and postgresql-postgis"),
            Kind::Redis => ("redis-server", "redis-server"),
            Kind::Memcached => ("memcached", "memcached"),
            Kind::Mysql => ("mysqld", "mariadb-server"),
            Kind::Mongodb => ("mongod", "none: MongoDB's own packages"),
            Kind::Rabbitmq => ("rabbitmq-server", "rabbitmq-server"),
            Kind::Elasticsearch => ("elasticsearch", "none: Elastic's own packages"),
            Kind::Opensearch => ("opensearch", "none: OpenSearch's own packages"),
        }
    }

    /// Whether Salve knows how to run this server from its installed binaries.
    fn runnable(self) -> bool {
        matches!(self, Kind::Postgres | Kind::Postgis | Kind::Redis | Kind::Memcached | Kind::Mysql | Kind::Rabbitmq)
    }
}

/// An installed server.
#[derive(Debug, Clone)]
struct Install {
    version: String,
    /// The folder of its binaries.
    bin: PathBuf,
}

#[derive(Debug, Default)]
struct Options {
    version: Option<String>,
    username: Option<String>,
    password: Option<String>,
    db: Option<String>,
}

pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sem-service: {e}");
            1
        }
    }
}

fn run(args: &[String]) -> Result<i32, String> {
    let (Some(action), Some(service)) = (args.first(), args.get(1)) else {
        return Err(format!("name an action and a service\n{USAGE}"));
    };
    let kind = Kind::parse(service).ok_or_else(|| {
        format!("'{service}' is not a service sem-service knows (postgres, postgis, mysql, redis, memcached, mongodb, rabbitmq, elasticsearch, opensearch)")
    })?;
    let state = state_dir(kind);
    match action.as_str() {
        "start" => start(kind, &state, &options(&args[2..])?),
        "stop" => Ok(stop(kind, &state)),
        "status" => Ok(status(kind, &state)),
        other => Err(format!("'{other}' is not an action: use start, stop or status\n{USAGE}")),
    }
}

/// What keeps `sem-service start SERVICE` from working on this machine, if anything (for
/// `salve lint`): an unknown service, no network of its own for jobs, a server not installed or
/// not runnable from its binaries.
pub fn unavailable(service: &str) -> Option<String> {
    let Some(kind) = Kind::parse(service) else {
        return Some(format!("'{service}' is not a service sem-service knows"));
    };
    if which("slirp4netns").is_none() {
        return Some("jobs here get no network of their own (slirp4netns is not installed), so sem-service refuses to start services".into());
    }
    let (program, package) = kind.server();
    if find(kind).is_empty() {
        return Some(format!(
            "{} is not installed on this machine (no {program}; Debian package: {package})",
            kind.name()
        ));
    }
    (!kind.runnable()).then(|| format!("Salve cannot run {} from its binaries yet", kind.name()))
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| format!("{key} needs a value"));
        match key {
            "--username" => o.username = Some(value()?),
            "--password" => o.password = Some(value()?),
            "--db" => o.db = Some(value()?),
            _ if !arg.starts_with('-') && o.version.is_none() => o.version = Some(arg.clone()),
            _ => return Err(format!("unknown argument '{arg}'\n{USAGE}")),
        }
    }
    for (what, v) in [("--username", &o.username), ("--db", &o.db)] {
        if let Some(v) = v
            && (v.is_empty() || v.len() > 63 || v.chars().any(|c| c.is_control()))
        {
            return Err(format!("{what} must be 1 to 63 printable characters"));
        }
    }
    Ok(o)
}

/// Where a service keeps its data, log and PID: the job's temporary folder.
fn state_dir(kind: Kind) -> PathBuf {
    let tmp = env("TMPDIR").unwrap_or_else(|| "/tmp".into());
    Path::new(&tmp).join("sem-service").join(kind.name())
}

fn start(kind: Kind, state: &Path, o: &Options) -> Result<i32, String> {
    match env("SALVE_JOB_NETWORK").as_deref() {
        Some("own" | "none") => {}
        _ => {
            return Err(format!(
                "this job shares the machine's network, so {} on port {} would collide with other jobs' and be theirs to \
                 reach; the machine that runs jobs needs slirp4netns (Debian: apt-get install slirp4netns) and the \
                 sandbox (not --no-sandbox) to give each job a network of its own",
                kind.name(),
                kind.port()
            ));
        }
    }
    if status_quiet(kind, state) {
        println!("{} is running already at 127.0.0.1:{}.", kind.name(), kind.port());
        return Ok(0);
    }
    let (program, package) = kind.server();
    let installs = find(kind);
    if installs.is_empty() {
        return Err(format!(
            "{} is not installed on this machine (no {program} found); the operator installs it (Debian package: {package}) \
             or puts a build in $SALVE_TOOLCHAINS/{}/VERSION/bin",
            kind.name(),
            kind.name()
        ));
    }
    let chosen = match &o.version {
        None => installs.iter().max_by(|a, b| compare_versions(&a.version, &b.version)),
        Some(v) => choose_version(&installs, v, |i| &i.version).or_else(|| {
            // A pinned patch release stands for its series (11.5 -> an installed 11.x).
            let major = v.split('.').next().unwrap_or(v);
            installs
                .iter()
                .filter(|i| i.version.split('.').next() == Some(major))
                .max_by(|a, b| compare_versions(&a.version, &b.version))
        }),
    };
    let Some(install) = chosen else {
        let have: Vec<&str> = installs.iter().map(|i| i.version.as_str()).collect();
        return Err(format!(
            "{} {} is not installed on this machine. Installed: {}. The operator adds it with the system's packages \
             ({package}) or as $SALVE_TOOLCHAINS/{}/VERSION/bin",
            kind.name(),
            o.version.as_deref().unwrap_or_default(),
            have.join(", "),
            kind.name()
        ));
    };
    if !kind.runnable() {
        return Err(format!(
            "{} {} is installed, but Salve cannot run it from its binaries yet: run the job in a container image with \
             the service (agent.containers), or use postgres, mysql, redis, memcached or rabbitmq",
            kind.name(),
            install.version
        ));
    }
    if TcpStream::connect_timeout(&addr(kind.port()), Duration::from_millis(200)).is_ok() {
        return Err(format!("port {} is taken in this job already: stop what listens there first", kind.port()));
    }
    let _ = std::fs::remove_dir_all(state);
    std::fs::create_dir_all(state).map_err(|e| format!("cannot make {}: {e}", state.display()))?;
    print!("Starting {}...", kind.name());
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let mut child = match kind {
        Kind::Postgres | Kind::Postgis => postgres(install, state, kind)?,
        Kind::Redis => spawn(
            state,
            Command::new(install.bin.join("redis-server")).args([
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &state.to_string_lossy(),
            ]),
        )?,
        Kind::Memcached => spawn(
            state,
            Command::new(install.bin.join("memcached")).args(["-l", "127.0.0.1", "-p", "11211", "-U", "0"]),
        )?,
        Kind::Mysql => mysql(install, state)?,
        Kind::Rabbitmq => {
            let mut conf = String::new();
            if let Some(u) = &o.username {
                conf.push_str(&format!("default_user = {u}\n"));
            }
            if let Some(p) = &o.password {
                conf.push_str(&format!("default_pass = {p}\n"));
            }
            std::fs::write(state.join("rabbitmq.conf"), conf)
                .map_err(|e| format!("cannot write its configuration: {e}"))?;
            rabbitmq(install, state)?
        }
        _ => return Err(format!("{} cannot be run yet", kind.name())),
    };
    std::fs::write(state.join("pid"), child.id().to_string()).map_err(|e| format!("cannot record the PID: {e}"))?;
    loop {
        if let Ok(Some(exit)) = child.try_wait() {
            println!();
            let log = std::fs::read_to_string(state.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(format!("{} ended before it accepted connections ({exit}):\n{}", kind.name(), tail.join("\n")));
        }
        if ready(kind) {
            break;
        }
        if started.elapsed() > READY_WITHIN {
            let _ = child.kill();
            println!();
            return Err(format!("{} did not accept connections within {}s", kind.name(), READY_WITHIN.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if matches!(kind, Kind::Postgres | Kind::Postgis) {
        postgres_setup(install, kind, o)?;
    }
    if kind == Kind::Mysql {
        mysql_setup(install, state, o)?;
    }
    println!("done.");
    println!("{} {} is running at 127.0.0.1:{}", kind.name(), install.version, kind.port());
    match kind {
        Kind::Postgres | Kind::Postgis => {
            let user = o.username.as_deref().unwrap_or("postgres");
            let password = if o.password.is_some() { "the password given" } else { "blank password" };
            println!("To access it use username '{user}' and {password}.");
        }
        Kind::Mysql => {
            let user = o.username.as_deref().unwrap_or("root");
            let password = if o.password.is_some() { "the password given" } else { "blank password" };
            println!("To access it use username '{user}' and {password}.");
        }
        _ => {}
    }
    Ok(0)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts a server in the background with its output in the state folder's `log`.
fn spawn(state: &Path, cmd: &mut Command) -> Result<std::process::Child, String> {
    let log = std::fs::File::create(state.join("log")).map_err(|e| format!("cannot make the service's log: {e}"))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err).spawn().map_err(|e| format!("cannot start the server: {e}"))
}

fn postgres(install: &Install, state: &Path, kind: Kind) -> Result<std::process::Child, String> {
    if kind == Kind::Postgis && !postgis_installed(&install.version) {
        return Err(format!(
            "postgis is not installed for PostgreSQL {} (Debian package: postgresql-{}-postgis-3)",
            install.version,
            install.version.split('.').next().unwrap_or_default()
        ));
    }
    let data = state.join("data");
    let out = Command::new(install.bin.join("initdb"))
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let socket = state.join("socket");
    std::fs::create_dir_all(&socket).map_err(|e| e.to_string())?;
    spawn(
        state,
        Command::new(install.bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", "5432", "-k"])
            .arg(&socket),
    )
}

/// MariaDB (its `mariadb-install-db`) or MySQL (`mysqld --initialize-insecure`), root with no
/// password, listening on 127.0.0.1:3306 and a socket in the state folder.
fn mysql(install: &Install, state: &Path) -> Result<std::process::Child, String> {
    let data = state.join("data");
    let mariadb_setup = ["mariadb-install-db", "mysql_install_db"]
        .iter()
        .flat_map(|n| [install.bin.join(n), install.bin.with_file_name("bin").join(n)])
        .find(|p| p.is_file());
    let out = match &mariadb_setup {
        Some(setup) => Command::new(setup)
            .args(["--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db"])
            .arg(format!("--datadir={}", data.display()))
            .output(),
        None => Command::new(install.bin.join("mysqld"))
            .args(["--no-defaults", "--initialize-insecure"])
            .arg(format!("--datadir={}", data.display()))
            .output(),
    }
    .map_err(|e| format!("cannot set up the database folder: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "setting up the database folder failed: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    spawn(
        state,
        Command::new(install.bin.join("mysqld"))
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", state.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", state.join("mysqld.pid").display()))
            .args(["--bind-address=127.0.0.1", "--port=3306", "--skip-name-resolve"]),
    )
}

/// RabbitMQ (the broker script itself, not Debian's wrapper that switches user): its node, data,
/// logs and Erlang cookie in the state folder, listening on 127.0.0.1:5672; `--username` and
/// `--password` become its default user (otherwise guest/guest).
fn rabbitmq(install: &Install, state: &Path) -> Result<std::process::Child, String> {
    let mut cmd = Command::new(install.bin.join("rabbitmq-server"));
    let at = |name: &str| state.join(name);
    cmd.env("HOME", state)
        .env("RABBITMQ_MNESIA_BASE", at("mnesia"))
        .env("RABBITMQ_LOG_BASE", at("logs"))
        .env("RABBITMQ_NODENAME", "rabbit@localhost")
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", "5672")
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", at("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", at("rabbitmq.pid"))
        .env("RABBITMQ_CONF_ENV_FILE", at("rabbitmq-env.conf"))
        .env("RABBITMQ_CONFIG_FILE", at("rabbitmq"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", at("advanced.config"));
    spawn(state, &mut cmd)
}

/// Root from any host with no password (as Semaphore's image has it), and the user and database
/// asked for.
fn mysql_setup(install: &Install, state: &Path, o: &Options) -> Result<(), String> {
    let literal = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let ident = |s: &str| format!("`{}`", s.replace('`', "``"));
    let mut sql = vec![
        "CREATE USER IF NOT EXISTS 'root'@'%'".to_owned(),
        "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION".to_owned(),
    ];
    let user = o.username.clone().unwrap_or_else(|| "root".into());
    if user != "root" {
        sql.push(format!("CREATE USER IF NOT EXISTS {}@'%'", literal(&user)));
        sql.push(format!("GRANT ALL PRIVILEGES ON *.* TO {}@'%'", literal(&user)));
    }
    if let Some(p) = &o.password {
        for host in ["'%'", "'localhost'"] {
            if user != "root" && host == "'localhost'" {
                continue;
            }
            sql.push(format!("ALTER USER {}@{host} IDENTIFIED BY {}", literal(&user), literal(p)));
        }
    }
    if let Some(db) = &o.db {
        sql.push(format!("CREATE DATABASE IF NOT EXISTS {}", ident(db)));
    }
    sql.push("FLUSH PRIVILEGES".into());
    let client = ["mariadb", "mysql"].iter().map(|n| install.bin.with_file_name("bin").join(n)).find(|p| p.is_file());
    let client = client.ok_or("no mysql client (mariadb or mysql) beside the server")?;
    let out = Command::new(client)
        .args(["--no-defaults", "-u", "root"])
        .arg(format!("--socket={}", state.join("mysqld.sock").display()))
        .arg("-e")
        .arg(sql.join(";\n"))
        .output()
        .map_err(|e| format!("cannot run the mysql client: {e}"))?;
    if !out.status.success() {
        return Err(format!("setting up users failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

fn postgis_installed(version: &str) -> bool {
    let major = version.split('.').next().unwrap_or_default();
    Path::new(&format!("/usr/share/postgresql/{major}/extension/postgis.control")).is_file()
}

/// The user and database asked for (Semaphore's `--username`, `--password`, `--db`), and PostGIS.
fn postgres_setup(install: &Install, kind: Kind, o: &Options) -> Result<(), String> {
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let literal = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut sql = Vec::new();
    let user = o.username.clone().unwrap_or_else(|| "postgres".into());
    if user != "postgres" {
        sql.push(format!("CREATE ROLE {} LOGIN SUPERUSER", ident(&user)));
    }
    if let Some(p) = &o.password {
        sql.push(format!("ALTER ROLE {} PASSWORD {}", ident(&user), literal(p)));
    }
    if let Some(db) = &o.db {
        sql.push(format!("CREATE DATABASE {} OWNER {}", ident(db), ident(&user)));
    }
    let mut statements: Vec<(String, String)> = sql.into_iter().map(|s| ("postgres".to_owned(), s)).collect();
    if kind == Kind::Postgis {
        for db in ["postgres".to_owned()].into_iter().chain(o.db.clone()) {
            statements.push((db, "CREATE EXTENSION IF NOT EXISTS postgis".into()));
        }
    }
    for (db, statement) in statements {
        let out = Command::new(install.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "-d",
                &db,
                "-c",
            ])
            .arg(&statement)
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("{statement}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    Ok(())
}

/// Whether the service answers its own protocol's hello.
fn ready(kind: Kind) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr(kind.port()), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let (ask, want): (&[u8], &[u8]) = match kind {
        Kind::Redis => (b"PING\r\n", b"+PONG"),
        Kind::Memcached => (b"version\r\n", b"VERSION"),
        // An SSLRequest: a ready server answers one byte, S or N.
        Kind::Postgres | Kind::Postgis => (&[0, 0, 0, 8, 4, 210, 22, 47], b"N"),
        // AMQP 0-9-1: the header, answered by a method frame (Connection.Start).
        Kind::Rabbitmq => (b"AMQP\x00\x00\x09\x01", &[1u8][..]),
        // The server speaks first: a handshake packet, protocol version 10 after its header.
        Kind::Mysql => {
            let mut buf = [0u8; 64];
            return matches!(s.read(&mut buf), Ok(n) if n > 4 && buf[4] == 10);
        }
        _ => return true,
    };
    if s.write_all(ask).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => buf[..n].starts_with(want) || (want == b"N" && buf[0] == b'S'),
        _ => false,
    }
}

fn pid_of(state: &Path) -> Option<i32> {
    std::fs::read_to_string(state.join("pid")).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

fn status_quiet(kind: Kind, state: &Path) -> bool {
    pid_of(state).is_some_and(alive) && ready(kind)
}

fn status(kind: Kind, state: &Path) -> i32 {
    if status_quiet(kind, state) {
        println!("{} running.", kind.name());
        0
    } else {
        println!("'{}' not running.", kind.name());
        1
    }
}

fn stop(kind: Kind, state: &Path) -> i32 {
    let Some(pid) = pid_of(state).filter(|p| alive(*p)) else {
        println!("No running service with name '{}' was found. Skipping.", kind.name());
        return 0;
    };
    let signal = |s| Command::new("kill").arg(format!("-{s}")).arg(pid.to_string()).status();
    let _ = signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = signal("KILL");
    }
    let _ = std::fs::remove_dir_all(state);
    println!("'{}' stopped.", kind.name());
    0
}

/// The servers of this kind installed here, newest last.
fn find(kind: Kind) -> Vec<Install> {
    let (program, _) = kind.server();
    let mut out = Vec::new();
    if let Some(root) = env("SALVE_TOOLCHAINS") {
        for (version, dir) in subdirs(&Path::new(&root).join(kind.name())) {
            if dir.join("bin").join(program).is_file() {
                out.push(Install { version, bin: dir.join("bin") });
            }
        }
    }
    if kind == Kind::Rabbitmq {
        // Debian's: /usr/lib/rabbitmq/bin with its version in lib/rabbitmq_server-<version>.
        let root = Path::new("/usr/lib/rabbitmq");
        for (name, _) in subdirs(&root.join("lib")) {
            if let Some(version) = name.strip_prefix("rabbitmq_server-")
                && root.join("bin/rabbitmq-server").is_file()
            {
                out.push(Install { version: version.to_owned(), bin: root.join("bin") });
            }
        }
    } else if matches!(kind, Kind::Postgres | Kind::Postgis) {
        for (_, dir) in subdirs(Path::new("/usr/lib/postgresql")) {
            let bin = dir.join("bin");
            if bin.join("postgres").is_file()
                && let Some(version) = version_of(&bin.join("postgres"))
            {
                out.push(Install { version, bin });
            }
        }
    } else {
        // Servers live in sbin, which a job's PATH may leave out.
        let found = which(program).or_else(|| {
            ["/usr/sbin", "/usr/bin"].map(|d| Path::new(d).join(program)).into_iter().find(|p| p.is_file())
        });
        if let Some(exe) = found
            && let Some(version) = version_of(&exe)
            && let Some(bin) = exe.parent()
        {
            out.push(Install { version, bin: bin.to_owned() });
        }
    }
    out.sort_by(|a, b| compare_versions(&a.version, &b.version));
    out
}

/// The version `PROGRAM --version` (`memcached -V`) prints.
fn version_of(exe: &Path) -> Option<String> {
    let flag = if exe.file_name().is_some_and(|n| n == "memcached") { "-V" } else { "--version" };
    system_version(exe, &[flag])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sem_version::version_in;

    #[test]
    fn versions_are_read_from_the_servers_own_words() {
        assert_eq!(version_in("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)").as_deref(), Some("15.14"));
        assert_eq!(
            version_in("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64").as_deref(),
            Some("7.0.15")
        );
        assert_eq!(version_in("memcached 1.6.18").as_deref(), Some("1.6.18"));
        assert_eq!(version_in("no version here"), None);
    }

    #[test]
    fn options_take_both_spellings_and_refuse_what_they_do_not_know() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = options(&args(&["11", "--username=app", "--password", "s3cret", "--db=app_test"]));
        let got =
            o.as_ref().map(|o| (o.version.as_deref(), o.username.as_deref(), o.password.as_deref(), o.db.as_deref()));
        assert_eq!(got, Ok((Some("11"), Some("app"), Some("s3cret"), Some("app_test"))));
        assert!(options(&args(&["--bogus"])).is_err());
        assert!(options(&args(&["--db"])).is_err());
        assert!(options(&args(&["--username=a\nb"])).is_err());
        assert!(Kind::parse("oracle").is_none());
        assert_eq!(Kind::parse("postgresql"), Some(Kind::Postgres));
    }
}
