//! What the systemd units rely on (packaging/systemd/sunlight-hub.service and
//! sunlight-agent.service, `Type=notify`, `WatchdogSec`): the hub and the agent, each started with a
//! notification socket as systemd would, say READY=1 once they serve and keep pinging WATCHDOG=1.
//! And the units and maintainer script parse.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};
use sunlight_tests::*;

/// Runs `script` with `sh` as systemd starts a `Type=notify` service with a one-second watchdog
/// (`WATCHDOG_PID=$$` in the script makes the shell's pid, kept by exec, the main pid), its log
/// `log` in `dir`, and collects what it sends to the notification socket until `pings` watchdog
/// pings have come (or 20 s have passed). Returns the still running process and the messages.
fn run_notified(dir: &Path, log: &str, script: String, pings: usize) -> (Proc, Vec<String>) {
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000");
    let proc = Proc::spawn(&mut cmd, dir.join(log));
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while start.elapsed() < Duration::from_secs(20) {
        let Ok(n) = socket.recv(&mut buf) else { break };
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
        if seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= pings {
            break;
        }
    }
    (proc, seen)
}

#[test]
fn the_hub_tells_systemd_it_is_ready_and_pings_the_watchdog() {
    let dir = scratch("sd-notify");
    let http = free_port();
    // As systemd does: WATCHDOG_PID is the service's main pid (the shell's, kept by exec).
    let script = format!(
        "WATCHDOG_PID=$$ exec '{}' run --data-dir '{}' --http 127.0.0.1:{http} --embedded-broker 127.0.0.1:{}",
        bin("sunlight-hub").display(),
        dir.join("hub").display(),
        free_port()
    );
    let (_hub, seen) = run_notified(&dir, "hub.log", script, 2);
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{seen:?}"
    );
    // READY only once it serves HTTP.
    assert!(std::net::TcpStream::connect(("127.0.0.1", http)).is_ok());
}

#[test]
fn the_agent_tells_systemd_it_is_ready_and_pings_the_watchdog() {
    let dir = scratch("agent-sd-notify");
    // The hub only registers the box here; the agent's broker is not running, and its sync loop
    // turns (and reconnects) all the same.
    let hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let agent = Agent::new(
        &dir.join("box"),
        "suixian-shangshi",
        "box-01",
        free_port(),
        &hub,
        "",
    );
    let script = format!(
        "WATCHDOG_PID=$$ exec '{}' -c '{}' run",
        bin("sunlight-agent").display(),
        agent.config.display()
    );
    let (_agent, seen) = run_notified(&dir, "agent.log", script, 3);
    assert!(seen.iter().any(|m| m.contains("READY=1")), "{seen:?}");
    assert!(
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "{seen:?}"
    );
    // READY only once the intake listens.
    assert!(std::net::TcpStream::connect(("127.0.0.1", agent.intake)).is_ok());
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/systemd/sunlight-agent.service"),
    )
    .expect("unit");
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec="),
        "{unit}"
    );
}

#[test]
fn the_units_name_the_binaries_and_the_maintainer_script_is_valid_shell() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (unit, exe) in [
        ("sunlight-hub.service", "/usr/bin/sunlight-hub run"),
        // The updatable copy, guarded by the packaged binary (docs/updates.md).
        (
            "sunlight-agent.service",
            "/var/lib/sunlight/bin/sunlight-agent -c /etc/sunlight/agent.toml run",
        ),
    ] {
        let text =
            std::fs::read_to_string(root.join("packaging/systemd").join(unit)).expect("unit");
        assert!(text.contains(&format!("ExecStart={exe}")), "{unit}");
        assert!(
            text.contains("Restart=always") && text.contains("User=sunlight"),
            "{unit}"
        );
    }
    let agent = std::fs::read_to_string(root.join("packaging/systemd/sunlight-agent.service"))
        .expect("unit");
    assert!(agent.contains(
        "ExecStartPre=-/usr/bin/sunlight-agent -c /etc/sunlight/agent.toml update guard"
    ));
    let status = std::process::Command::new("sh")
        .arg("-n")
        .arg(root.join("packaging/debian/postinst"))
        .status()
        .expect("sh -n");
    assert!(status.success());
}
