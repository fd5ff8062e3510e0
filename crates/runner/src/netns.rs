//! A network of the job's own. bubblewrap gives the job a fresh network namespace (its own
//! loopback: a server it starts on 127.0.0.1:5432 is its alone, and another job can start one on
//! the same port); slirp4netns, attached from outside, gives that namespace outbound access
//! through the host's sockets with the host's loopback closed (`--disable-host-loopback`); and
//! the few loopback ports of the host a job may reach (the Salve server it reports to) are
//! forwarded one by one from the job's 127.0.0.1 to the host's.
//!
//! The jail runs this in front of bwrap (`--slirp PATH --forward PORT`): bwrap is started with
//! `--info-fd` (where it says the job's PID) and `--block-fd` (the job waits on it), the network
//! is set up around the waiting job, then the job is let go. When bwrap ends, so do slirp4netns
//! (its `--exit-fd` closes) and the forwards (they live in the jail's threads). A killed jail
//! takes them along: bwrap dies with its parent, slirp4netns with its exit fd.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// Finds slirp4netns on PATH.
pub fn find_slirp() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("slirp4netns")).find(|p| p.is_file())
}

/// The port of a URL whose host is this machine's loopback (`127.0.0.0/8`, `::1`,
/// `localhost`) or unspecified address (`0.0.0.0`), where it names one.
pub fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.trim().split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if loopback { port.parse().ok() } else { None }
}

/// The DNS server slirp4netns answers on inside the namespace.
const SLIRP_DNS: &str = "10.0.2.3";

/// Runs `bwrap` (its argv, `--unshare-net` among its options) with the job's network set up
/// before the job's first command: see the module's documentation.
pub fn run(bwrap: &[OsString], slirp: &Path, forward: &[u16]) -> Result<ExitStatus, String> {
    let (info_read, info_write) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let (block_read, block_write) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    inherit(&info_write)?;
    inherit(&block_read)?;
    let (program, args) = bwrap.split_first().ok_or("no bwrap to run")?;
    // bwrap's own options end at the first "--"; mounts apply in order, so ours go last.
    let end = args.iter().position(|a| a == "--").ok_or("bwrap's options do not end with --")?;
    let mut options: Vec<OsString> = args[..end].to_vec();
    options.extend(["--info-fd".into(), info_write.as_raw_fd().to_string().into()]);
    options.extend(["--block-fd".into(), block_read.as_raw_fd().to_string().into()]);
    // A host whose resolver listens on its own loopback (systemd-resolved's 127.0.0.53) cannot
    // be asked from the job's namespace: the job asks slirp4netns's, which forwards to it.
    let resolv = if loopback_resolver() { Some(std::io::pipe().map_err(|e| e.to_string())?) } else { None };
    if let Some((read, _)) = &resolv {
        inherit(read)?;
        options.extend(["--ro-bind-data".into(), read.as_raw_fd().to_string().into(), "/etc/resolv.conf".into()]);
    }
    let mut job = Command::new(program)
        .args(options)
        .args(&args[end..])
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    let block_fd = block_read.as_raw_fd();
    drop((info_write, block_read));
    if let Some((read, mut write)) = resolv {
        drop(read);
        let conf = format!("nameserver {SLIRP_DNS}\n");
        write.write_all(conf.as_bytes()).map_err(|e| format!("cannot hand the job its resolver: {e}"))?;
    }
    let set_up = || -> Result<(std::process::Child, OwnedFd), String> {
        let pid = child_pid(info_read)?;
        wait_until_blocked(pid, block_fd);
        let (slirp_child, exit_write) = start_slirp(slirp, pid)?;
        let netns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| format!("cannot open the job's network namespace: {e}"))?;
        for &port in forward {
            forward_port(&netns, port)?;
        }
        Ok((slirp_child, exit_write))
    };
    let kept = match set_up() {
        Ok(kept) => kept,
        Err(e) => {
            let _ = job.kill();
            let _ = job.wait();
            return Err(e);
        }
    };
    let mut block_write = block_write;
    // Any byte (or the pipe's end) lets bwrap go on.
    let _ = block_write.write_all(b"1");
    drop(block_write);
    let status = job.wait().map_err(|e| format!("cannot wait for the job: {e}"))?;
    let (mut slirp_child, exit_write) = kept;
    // Its exit fd closed, slirp4netns ends, and the kernel takes down the job's namespace with
    // its tap device (some 20 ms, the most of what a network of its own costs a job).
    drop(exit_write);
    let _ = slirp_child.wait();
    Ok(status)
}

/// Lets a child process inherit `fd` (pipes are made close-on-exec).
fn inherit(fd: &impl AsFd) -> Result<(), String> {
    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(|e| format!("cannot pass a pipe on: {e}"))
}

/// The job's PID from bwrap's `--info-fd` JSON (`{"child-pid": N, ...}`).
fn child_pid(mut info: std::io::PipeReader) -> Result<u32, String> {
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = info.read(&mut buf).map_err(|e| format!("cannot read bwrap's info: {e}"))?;
        if n == 0 {
            return Err("bubblewrap ended before the job started".into());
        }
        text.extend_from_slice(&buf[..n]);
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) {
            return v
                .get("child-pid")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| "bubblewrap's info names no child-pid".to_owned());
        }
        if text.len() > 64 * 1024 {
            return Err("bubblewrap's info is not JSON".into());
        }
    }
}

/// Waits until bwrap's child waits on the block fd: by then it has set up its loopback, which
/// slirp4netns must not configure the namespace alongside (bwrap's netlink requests fail when
/// they do). Gives up waiting after a few seconds; the job then starts as it can.
fn wait_until_blocked(pid: u32, fd: i32) {
    // The number of read(2), which /proc/PID/syscall shows first while the process is in it.
    const READ: u32 = if cfg!(any(target_arch = "aarch64", target_arch = "riscv64", target_arch = "loongarch64")) {
        63
    } else if cfg!(any(target_arch = "x86", target_arch = "arm")) {
        3
    } else {
        0
    };
    let want = format!("{READ} {fd:#x} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(s) if s.starts_with(&want) => return,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(_) => return,
        }
    }
}

/// slirp4netns attached to `pid`'s network namespace, waited for until it says the network is
/// up. It ends when the returned fd is closed.
fn start_slirp(slirp: &Path, pid: u32) -> Result<(std::process::Child, OwnedFd), String> {
    let (mut ready_read, ready_write) = std::io::pipe().map_err(|e| e.to_string())?;
    let (exit_read, exit_write) = std::io::pipe().map_err(|e| e.to_string())?;
    inherit(&ready_write)?;
    inherit(&exit_read)?;
    let child = Command::new(slirp)
        .args(["--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp"])
        .arg(format!("--ready-fd={}", ready_write.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_read.as_raw_fd()))
        .arg(pid.to_string())
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", slirp.display()))?;
    drop((ready_write, exit_read));
    // slirp4netns writes one byte when the network is up, or ends (and the pipe with it).
    let mut byte = [0u8; 1];
    let mut child = child;
    if matches!(ready_read.read(&mut byte), Ok(1)) {
        return Ok((child, OwnedFd::from(exit_write)));
    }
    let _ = child.kill();
    let mut said = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut said);
    }
    let _ = child.wait();
    let said = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("it said nothing").to_owned();
    Err(format!("slirp4netns could not give the job a network: {said}"))
}

/// Listens on the job's 127.0.0.1:`port` and carries each connection to the host's.
fn forward_port(netns: &std::fs::File, port: u16) -> Result<(), String> {
    let fd = netns.try_clone().map_err(|e| e.to_string())?;
    // A thread of its own enters the namespace: the listening sockets stay there, and the
    // jail's other threads (which connect to the host) never leave the host's.
    let listeners = std::thread::spawn(move || -> Result<Vec<TcpListener>, String> {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(|e| format!("cannot enter the job's network namespace: {e}"))?;
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| format!("cannot forward port {port} into the job: {e}"))?;
        // localhost may be ::1 first; where the job has no IPv6 loopback, 127.0.0.1 will do.
        Ok([Some(v4), TcpListener::bind((Ipv6Addr::LOCALHOST, port)).ok()].into_iter().flatten().collect())
    })
    .join()
    .map_err(|_| "the forwarding thread panicked".to_owned())??;
    for listener in listeners {
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                std::thread::spawn(move || carry(client, port));
            }
        });
    }
    Ok(())
}

/// Copies bytes both ways between a job's connection and the host's port until both are done.
fn carry(client: TcpStream, port: u16) {
    let host = [SocketAddr::from((Ipv4Addr::LOCALHOST, port)), SocketAddr::from((Ipv6Addr::LOCALHOST, port))];
    let Ok(server) = TcpStream::connect(&host[..]) else {
        return;
    };
    let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut server_w);
        let _ = server_w.shutdown(Shutdown::Write);
    });
    let (mut server_r, mut client_w) = (server, client);
    let _ = std::io::copy(&mut server_r, &mut client_w);
    let _ = client_w.shutdown(Shutdown::Write);
    let _ = upstream.join();
}

/// Whether the host's resolver is on its own loopback (127.0.0.0/8 or ::1).
fn loopback_resolver() -> bool {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    nameservers_are_loopback(&conf)
}

fn nameservers_are_loopback(conf: &str) -> bool {
    let servers: Vec<std::net::IpAddr> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next().and_then(|a| a.parse().ok()))
        .collect();
    !servers.is_empty() && servers.iter().any(std::net::IpAddr::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resolver_on_the_hosts_loopback_is_replaced() {
        assert!(nameservers_are_loopback("# systemd-resolved\nnameserver 127.0.0.53\noptions edns0\n"));
        assert!(nameservers_are_loopback("nameserver ::1\n"));
        assert!(!nameservers_are_loopback("nameserver 10.255.255.53\n"));
        assert!(!nameservers_are_loopback("search example\n"));
    }
}
