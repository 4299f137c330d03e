//! Revoking a box at a running hub: once `sunlight-hub device revoke` has run, the box's next
//! batches are dead-lettered with the reason and raise a `revoked` alarm, nothing of it is stored,
//! its image uploads are refused, and another box of the same site keeps syncing.

use serde_json::json;
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";

#[test]
fn a_revoked_box_is_refused_by_a_running_hub() {
    let dir = scratch("revoke");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let mut lost = Agent::new(&dir.join("lost"), SITE, "box-01", hub.mqtt_port(), &hub, "");
    let mut other = Agent::new(
        &dir.join("other"),
        SITE,
        "box-02",
        hub.mqtt_port(),
        &hub,
        "",
    );
    lost.start();
    other.start();
    hub.start();
    assert!(lost.punch(1) && other.punch(1));
    wait_for(Duration::from_secs(30), "both boxes synced", || {
        (hub.events(SITE, "box-01", "punch").len() == 1
            && hub.events(SITE, "box-02", "punch").len() == 1)
            .then_some(())
    });

    let out = std::process::Command::new(bin("sunlight-hub"))
        .args([
            "device",
            "revoke",
            "--site",
            SITE,
            "--device",
            "box-01",
            "--reason",
            "box stolen",
            "--data-dir",
        ])
        .arg(&hub.dir)
        .output()
        .expect("revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Next:"));
    // Revoking twice says so.
    let again = std::process::Command::new(bin("sunlight-hub"))
        .args([
            "device",
            "revoke",
            "--site",
            SITE,
            "--device",
            "box-01",
            "--reason",
            "x",
            "--data-dir",
        ])
        .arg(&hub.dir)
        .output()
        .expect("revoke again");
    assert!(!again.status.success());

    // The running hub picks the revocation up within seconds.
    std::thread::sleep(Duration::from_secs(4));
    for n in 2..=4 {
        assert!(lost.punch(n) && other.punch(n));
    }
    wait_for(
        Duration::from_secs(30),
        "the revoked box's batch dead-lettered",
        || {
            hub.dead_letters()
                .iter()
                .any(|d| d["reason"].as_str().unwrap_or("").contains("revoked"))
                .then_some(())
        },
    );
    wait_for(
        Duration::from_secs(30),
        "the other box keeps syncing",
        || (hub.events(SITE, "box-02", "punch").len() == 4).then_some(()),
    );
    assert_eq!(
        hub.events(SITE, "box-01", "punch").len(),
        1,
        "nothing after the revocation"
    );
    assert!(hub.alarms().iter().any(|a| a["kind"] == "revoked"));
    let devices = hub.get("/api/v1/devices").expect("devices");
    let revoked: Vec<_> = devices["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["revoked_at"].is_string())
        .map(|d| d["device"].clone())
        .collect();
    assert_eq!(revoked, [json!("box-01")]);
    assert_eq!(hub.integrity(), "ok");
}
