//! A ZKTeco terminal (simulated, speaking the real PUSH request format) → box → broker → hub:
//! handshake, an ATTLOG upload with a bad line, a re-sent range, a GBK user name, an unknown
//! terminal, an oversized body. Every good record becomes exactly one punch at the hub.

use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const SN: &str = "CDQ9190960040";

#[test]
fn a_push_terminal_s_records_become_one_punch_each_at_the_hub() {
    let dir = scratch("zkteco");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let port = free_port();
    let zk = format!(
        "[health]\ninterval_secs = 0\n[zkteco]\nlisten = \"127.0.0.1:{port}\"\nterminals = [\"{SN}\"]\n"
    );
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        &zk,
    );
    agent.start();
    let base = format!("http://127.0.0.1:{port}/iclock");
    let terminal = http::Client::new();

    // Handshake.
    let (status, options) = terminal
        .get_text(&format!(
            "{base}/cdata?SN={SN}&options=all&pushver=2.4.1&language=83"
        ))
        .expect("handshake");
    assert_eq!(status, 200);
    assert!(
        options.starts_with(&format!("GET OPTION FROM: {SN}")) && options.contains("TimeZone=8"),
        "{options}"
    );

    // Punches, one line malformed (an impossible date).
    let first = "0451\t2025-11-03 08:36:12\t0\t1\t0\t0\t0\n0452\t2025-11-03 08:29:50\t0\t2\t0\t0\t0\n0453\t2025-02-30 08:31:00\t0\t1\t0\n0454\t2025-11-03 09:05:00\t0\t15\t0\n";
    let (status, text) = terminal
        .post_bytes(
            &format!("{base}/cdata?SN={SN}&table=ATTLOG&Stamp=9999"),
            first.as_bytes().to_vec(),
        )
        .expect("attlog");
    assert_eq!((status, text.trim()), (200, "OK: 4"));
    // The terminal re-sends the whole range plus one new record.
    let again = format!("{first}0451\t2025-11-03 17:31:02\t1\t1\t0\t0\t0\n");
    let (status, _) = terminal
        .post_bytes(
            &format!("{base}/cdata?SN={SN}&table=ATTLOG&Stamp=9999"),
            again.into_bytes(),
        )
        .expect("attlog again");
    assert_eq!(status, 200);

    // A zh_CN terminal sends its users in GBK.
    let (gbk, _, _) =
        encoding_rs::GBK.encode("USER PIN=0451\tName=张三丰\tPri=0\tPasswd=\tCard=\tGrp=1\n");
    let (status, text) = terminal
        .post_bytes(
            &format!("{base}/cdata?SN={SN}&table=OPERLOG&Stamp=9999"),
            gbk.into_owned(),
        )
        .expect("operlog");
    assert_eq!((status, text.trim()), (200, "OK: 1"));

    // Command polling: nothing to do.
    assert_eq!(
        terminal
            .get_text(&format!("{base}/getrequest?SN={SN}"))
            .map(|r| r.0),
        Some(200)
    );

    // Unknown terminals and huge bodies are refused with a reason.
    let (status, text) = terminal
        .post_bytes(
            &format!("{base}/cdata?SN=EVIL0001&table=ATTLOG"),
            first.as_bytes().to_vec(),
        )
        .expect("unknown");
    assert_eq!(status, 403);
    assert!(text.contains("zkteco.terminals"), "{text}");
    // The box answers 413 and closes; a client still writing may see the close first, so try again
    // until the answer is read.
    let huge = (0..5).find_map(|_| {
        terminal.post_bytes(
            &format!("{base}/cdata?SN={SN}&table=ATTLOG"),
            vec![b'1'; 5 * 1024 * 1024],
        )
    });
    assert_eq!(huge.map(|r| r.0), Some(413));

    wait_for(Duration::from_secs(30), "four punches at the hub", || {
        (hub.events(SITE, "box-01", "punch").len() >= 4).then_some(())
    });
    // Give any duplicate time to show up before counting.
    std::thread::sleep(Duration::from_millis(500));
    let punches = hub.events(SITE, "box-01", "punch");
    assert_eq!(
        punches.len(),
        4,
        "three good lines + one new record, re-sent lines once: {punches:#?}"
    );
    let seen: Vec<(String, String, String)> = punches
        .iter()
        .map(|p| {
            (
                p["body"]["staff_id"].as_str().unwrap_or("").into(),
                p["at"].as_str().unwrap_or("").into(),
                p["body"]["method"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        seen[0],
        (
            "0451".into(),
            "2025-11-03T08:36:12.000+08:00".into(),
            "fingerprint".into()
        )
    );
    assert_eq!(
        seen[1],
        (
            "0452".into(),
            "2025-11-03T08:29:50.000+08:00".into(),
            "card".into()
        )
    );
    assert_eq!(
        seen[2],
        (
            "0454".into(),
            "2025-11-03T09:05:00.000+08:00".into(),
            "face".into()
        )
    );
    assert_eq!(seen[3].0, "0451");
    assert_eq!(punches[3]["body"]["direction"], "out");
    for p in &punches {
        assert_eq!(p["body"]["terminal_sn"], SN);
        assert!(
            p["body"]["box_time"].is_string(),
            "every punch carries terminal time and box time"
        );
    }

    // The roster arrives at the hub; the next day's punches give the verdicts of the board.
    let roster = dir.join("roster.toml");
    let entry = |id: &str, unit: &str, window: &str, role: &str| {
        format!(
            "[[staff]]\nsite = \"{SITE}\"\nstaff_id = \"{id}\"\nname = \"{id}\"\nunit = \"{unit}\"\nwindow = \"{window}\"\nrole = \"{role}\"\npin = \"135790\"\n"
        )
    };
    std::fs::write(
        &roster,
        [
            entry("0451", "民政办", "W1", "A"),
            entry("0452", "民政办", "W1", "B"),
            entry("0454", "林业站", "W2", "A"),
            entry("0455", "林业站", "W2", "B"),
        ]
        .concat(),
    )
    .expect("roster");
    let out = std::process::Command::new(bin("sunlight-hub"))
        .args(["roster", "import", "--data-dir"])
        .arg(&hub.dir)
        .arg(&roster)
        .output()
        .expect("roster import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Tuesday 2025-11-04: 0451 six minutes late; 0454 35 minutes late (half-day absence) and
    // nobody else at W2, so W2 stands vacant in the morning.
    let tuesday = "0451\t2025-11-04 08:36:00\t0\t1\t0\t0\t0\n0451\t2025-11-04 12:02:00\t1\t1\t0\t0\t0\n0454\t2025-11-04 09:05:00\t0\t15\t0\n0454\t2025-11-04 12:00:00\t1\t15\t0\n";
    // (The terminal's earlier connection was closed by the 413; like a real terminal, retry.)
    let (status, _) = wait_for(Duration::from_secs(10), "Tuesday's upload", || {
        terminal.post_bytes(
            &format!("{base}/cdata?SN={SN}&table=ATTLOG&Stamp=10000"),
            tuesday.as_bytes().to_vec(),
        )
    });
    assert_eq!(status, 200);
    let board = wait_for(
        Duration::from_secs(30),
        "Tuesday's punches on the board",
        || {
            let b = hub.get(&format!(
                "/api/v1/attendance/board?site={SITE}&day=2025-11-04"
            ))?;
            let w2 = b["windows"]
                .as_array()?
                .iter()
                .find(|w| w["window"] == "W2")?
                .clone();
            (w2["staff"][0]["punches"].as_array()?.len() == 2).then_some(b)
        },
    );
    let window = |name: &str| {
        board["windows"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["window"] == name))
            .cloned()
            .unwrap_or_default()
    };
    let staff = |w: &serde_json::Value, id: &str| {
        w["staff"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["staff_id"] == id))
            .cloned()
            .unwrap_or_default()
    };
    let (w1, w2) = (window("W1"), window("W2"));
    let morning = |w: &serde_json::Value, id: &str| staff(w, id)["verdicts"][0].clone();
    assert_eq!(morning(&w1, "0451")["verdict"], "late", "{board}");
    assert_eq!(morning(&w1, "0451")["minutes"], 6);
    assert_eq!(morning(&w2, "0454")["verdict"], "absent");
    assert_eq!(w1["segments"][0]["vacant"], false);
    assert_eq!(w2["segments"][0]["vacant"], true, "{w2}");
    assert_eq!(w1["segments"][0]["on_duty"], serde_json::json!(["0451"]));
}
