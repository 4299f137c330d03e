//! Attendance at the hub through a real SQLite store, with the real calendar: the roster with
//! hashed PINs, the day's board (late, absent, vacant, A/B substitution, leave), late-arriving
//! punches counted at their own time, make-up punches with quota and deadline, the stamped-note
//! rule, patrols per unit, and the bundled assessment.

use chrono::NaiveDate;
use std::sync::Arc;
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::oversight::attendance::Verdict;
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::store::attendance::{self as att, MakeupDecision, MakeupRequest, RequestError};
use sunlight_hub::store::{Reader, Writer};
use sunlight_hub::supervise::Supervision;

const SITE: &str = "suixian-shangshi";

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const ROSTER: &str = r#"
[[staff]]
site = "suixian-shangshi"
staff_id = "0451"
name = "李明"
unit = "民政办"
window = "W1"
role = "A"
pin = "258013"
[[staff]]
site = "suixian-shangshi"
staff_id = "0452"
name = "王芳"
unit = "民政办"
window = "W1"
role = "B"
[[staff]]
site = "suixian-shangshi"
staff_id = "0611"
name = "张强"
unit = "林业站"
window = "W2"
role = "A"
[[staff]]
site = "suixian-shangshi"
staff_id = "0612"
name = "赵敏"
unit = "林业站"
window = "W2"
role = "B"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sup: Supervision,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let sup = Supervision::new(
            Arc::new(Calendar::official().unwrap()),
            HubClock::fixed(d("2025-11-13")),
            Arc::new(HubConfig::default()),
        )
        .unwrap();
        let f = Fixture {
            _dir: dir,
            path,
            sup,
        };
        let staff = att::parse_roster(ROSTER).unwrap();
        let mut w = f.writer();
        let tx = w.transaction().unwrap();
        att::upsert_staff(&tx, &staff).unwrap();
        tx.commit().unwrap();
        f
    }

    fn writer(&self) -> Writer {
        Writer::open(&self.path).unwrap()
    }

    fn reader(&self) -> Reader {
        Reader::open(&self.path).unwrap()
    }

    fn punch(&self, staff: &str, at: &str, offset: Option<i64>) {
        let body =
            serde_json::json!({"staff_id": staff, "direction": "unspecified", "method": "card",
            "source": "zkteco-1"})
            .to_string();
        self.writer()
            .run(|tx| att::apply_punch(tx, SITE, at, &body, offset))
            .unwrap();
    }

    fn duty(&self, body: serde_json::Value) {
        let body = body.to_string();
        self.writer()
            .run(|tx| att::apply_duty(tx, SITE, "2025-11-01T09:00:00+08:00", &body))
            .unwrap();
    }

    fn board(&self, day: &str) -> Vec<att::BoardWindow> {
        self.reader()
            .run(|c| att::board(c, &self.sup.office(), &self.sup.calendar(), SITE, d(day)))
            .unwrap()
    }

    /// A clerk's November, judged up to `today` (as of `until` on that day, if given).
    fn november(
        &self,
        staff: &str,
        today: NaiveDate,
        until: Option<chrono::NaiveDateTime>,
    ) -> att::StaffMonth {
        self.reader()
            .run(|c| {
                att::staff_month(
                    c,
                    &self.sup.office(),
                    &self.sup.calendar(),
                    SITE,
                    staff,
                    "2025-11",
                    (today, until),
                )
            })
            .unwrap()
            .unwrap()
    }
}

fn verdicts(w: &att::BoardWindow, staff: &str) -> Vec<Verdict> {
    w.staff
        .iter()
        .find(|s| s.staff_id == staff)
        .unwrap()
        .verdicts
        .iter()
        .map(|v| v.verdict)
        .collect()
}

#[test]
fn the_board_shows_late_absent_vacant_and_substituted_segments() {
    let f = Fixture::new();
    // Thursday 2025-11-13, winter hours 08:30–12:00 and 14:00–17:00.
    f.punch("0451", "2025-11-13T08:36:00+08:00", Some(1200)); // late (grace 5 min)
    f.punch("0451", "2025-11-13T12:01:00+08:00", Some(1200));
    f.punch("0451", "2025-11-13T13:58:00+08:00", Some(1200));
    f.punch("0451", "2025-11-13T17:02:00+08:00", Some(1200));
    f.punch("0452", "2025-11-13T09:05:00+08:00", None); // 35 min late: half-day absence
    f.punch("0452", "2025-11-13T12:00:00+08:00", None);
    // W2: nobody in the morning; in the afternoon the A holder is out on registered business and
    // the B substitute is there.
    f.duty(
        serde_json::json!({"staff_id": "0611", "type": "out_of_office", "from": "2025-11-13 13:30",
        "to": "2025-11-13 17:30"}),
    );
    f.punch("0612", "2025-11-13T13:55:00+08:00", None);
    f.punch("0612", "2025-11-13T17:00:00+08:00", None);
    let board = f.board("2025-11-13");
    let w1 = board.iter().find(|w| w.window == "W1").unwrap();
    let w2 = board.iter().find(|w| w.window == "W2").unwrap();
    assert_eq!(
        verdicts(w1, "0451"),
        [Verdict::Late { minutes: 6 }, Verdict::OnTime]
    );
    assert_eq!(verdicts(w1, "0452")[0], Verdict::Absent);
    assert!(w1.segments.iter().all(|s| !s.vacant));
    assert_eq!(verdicts(w2, "0611"), [Verdict::Absent, Verdict::OnLeave]);
    assert!(w2.segments[0].vacant, "nobody at W2 in the morning");
    assert!(!w2.segments[1].vacant && w2.segments[1].substituted);
    assert_eq!(w2.segments[1].on_duty, ["0612"]);
    // The box's clock offset is shown next to each punch.
    let p = &w1.staff[0].punches[0];
    assert_eq!(
        (p.time.as_str(), p.clock_offset_ms),
        ("08:36:00", Some(1200))
    );

    // After an outage, the box delivers 0611's morning punches three hours late: they count at
    // their own time and the window is no longer vacant.
    f.punch("0611", "2025-11-13T08:29:00+08:00", Some(-300));
    f.punch("0611", "2025-11-13T12:03:00+08:00", Some(-300));
    let board = f.board("2025-11-13");
    let w2 = board.iter().find(|w| w.window == "W2").unwrap();
    assert_eq!(verdicts(w2, "0611")[0], Verdict::OnTime);
    assert!(!w2.segments[0].vacant);
    // A day off on the county calendar needs nobody.
    let sunday = f.board("2025-11-16");
    assert!(sunday.iter().all(|w| w.segments.iter().all(|s| !s.vacant)));
    // The 调休 Saturday 2025-10-11 is a working day: an empty window is vacant.
    let saturday = f.board("2025-10-11");
    assert!(saturday.iter().all(|w| w.segments.iter().all(|s| s.vacant)));
}

#[test]
fn pins_are_hashed_and_unknown_roles_refused() {
    let f = Fixture::new();
    let roster = f
        .reader()
        .run(|c| att::roster(c, Some(SITE), true))
        .unwrap();
    let li = roster.iter().find(|s| s.staff_id == "0451").unwrap();
    let hash = li.pin_hash.as_deref().unwrap();
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains("258013"),
        "{hash}"
    );
    use argon2::PasswordVerifier;
    let parsed = argon2::PasswordHash::new(hash).unwrap();
    assert!(
        argon2::Argon2::default()
            .verify_password(b"258013", &parsed)
            .is_ok()
    );
    assert!(
        argon2::Argon2::default()
            .verify_password(b"0000", &parsed)
            .is_err()
    );
    let public = f
        .reader()
        .run(|c| att::roster(c, Some(SITE), false))
        .unwrap();
    assert!(public.iter().all(|s| s.pin_hash.is_none()));
    let e = att::parse_roster(&ROSTER.replace("role = \"B\"", "role = \"C\"")).unwrap_err();
    assert!(e.contains("role"), "{e}");
}

#[test]
fn make_up_punches_have_a_quota_a_deadline_and_an_approval() {
    let f = Fixture::new();
    let req = |day: &str, time: &str| MakeupRequest {
        site: SITE.into(),
        staff_id: "0451".into(),
        day: d(day),
        time: time.into(),
        reason: "忘记打卡".into(),
        by: "李明".into(),
    };
    let today = d("2025-11-13");
    let ask = |r: MakeupRequest| {
        f.writer()
            .run(|tx| {
                Ok(att::request_makeup(
                    tx,
                    &f.sup.config(),
                    &f.sup.calendar(),
                    &r,
                    today,
                ))
            })
            .unwrap()
    };
    // Monday 11-10 + 3 working days = Thursday 11-13: still in time. Friday 11-07 is not.
    let late = ask(req("2025-11-07", "08:25")).unwrap_err();
    assert!(
        matches!(&late, RequestError::Refused(m) if m.contains("2025-11-12")),
        "{late}"
    );
    let first = ask(req("2025-11-10", "08:25")).unwrap();
    ask(req("2025-11-11", "08:25")).unwrap();
    ask(req("2025-11-12", "08:25")).unwrap();
    let over = ask(req("2025-11-13", "08:25")).unwrap_err();
    assert!(
        matches!(&over, RequestError::Refused(m) if m.contains("3 make-up")),
        "{over}"
    );
    // Approved: counts as a punch on the day, marked as a make-up; the original record is untouched.
    f.punch("0451", "2025-11-10T12:05:00+08:00", None);
    let decided = f
        .writer()
        .run(|tx| {
            Ok(att::decide_makeup(
                tx,
                first.id,
                &MakeupDecision {
                    approve: true,
                    by: "民政办主任".into(),
                    note: String::new(),
                },
                today,
            ))
        })
        .unwrap()
        .unwrap();
    assert_eq!(decided.status, "approved");
    let month = f.november("0451", today, None);
    let monday = month.days.iter().find(|x| x.day == "2025-11-10").unwrap();
    assert_eq!(monday.verdicts[0].verdict, Verdict::OnTime);
    assert_eq!(monday.punches.len(), 2);
    assert!(monday.punches.iter().any(|p| p.makeup) && monday.punches.iter().any(|p| !p.makeup));
    assert_eq!(month.totals.makeups, 1);
    // Deciding twice is refused.
    let again = f
        .writer()
        .run(|tx| {
            Ok(att::decide_makeup(
                tx,
                first.id,
                &MakeupDecision {
                    approve: false,
                    by: "x".into(),
                    note: String::new(),
                },
                today,
            ))
        })
        .unwrap();
    assert!(again.is_err());
}

#[test]
fn leave_over_a_day_without_a_stamped_note_is_listed() {
    let f = Fixture::new();
    // Two working days of 事假 without a note; one afternoon with a note.
    f.duty(
        serde_json::json!({"staff_id": "0452", "type": "leave", "leave_type": "事假",
        "from": "2025-11-03", "to": "2025-11-04"}),
    );
    f.duty(
        serde_json::json!({"staff_id": "0452", "type": "leave", "leave_type": "病假",
        "from": "2025-11-06 14:00", "to": "2025-11-06 17:30", "note_ref": "医院证明 1102"}),
    );
    let month = f.november("0452", d("2025-11-13"), None);
    assert_eq!(
        month.leave_needing_note.len(),
        1,
        "{:?}",
        month.leave_needing_note
    );
    assert_eq!(month.leave_needing_note[0]["working_days"], 2);
    let listed = f
        .reader()
        .run(|c| att::leave_month(c, &f.sup.calendar(), SITE, "2025-11"))
        .unwrap()
        .unwrap();
    let flags: Vec<_> = listed
        .iter()
        .map(|l| l["needs_stamped_note"].as_bool())
        .collect();
    assert_eq!(flags, [Some(true), Some(false)]);
    // The leave covers both segments of both days.
    let monday = month.days.iter().find(|x| x.day == "2025-11-03").unwrap();
    assert!(
        monday
            .verdicts
            .iter()
            .all(|v| v.verdict == Verdict::OnLeave)
    );
    assert!(month.totals.on_leave >= 5);
}

#[test]
fn units_see_patrols_vacancies_and_bundled_deductions() {
    let f = Fixture::new();
    let patrol =
        serde_json::json!({"leader_id": "L01", "unit": "民政办", "findings": []}).to_string();
    f.writer()
        .run(|tx| att::apply_patrol(tx, SITE, "2025-11-05T10:00:00+08:00", &patrol))
        .unwrap();
    let p = f
        .reader()
        .run(|c| att::patrols_month(c, SITE, "2025-11"))
        .unwrap()
        .unwrap();
    assert_eq!(p.by_unit.get("民政办"), Some(&1));
    assert_eq!(p.units_without, ["林业站"]);
    let out = f
        .writer()
        .run(|tx| {
            Ok(att::record_violation(
                tx,
                &f.sup.config(),
                &att::ViolationInput {
                    site: SITE.into(),
                    staff_id: "0451".into(),
                    day: d("2025-11-05"),
                    what: "脱岗 2 小时".into(),
                    by: "监察室".into(),
                    months: None,
                },
            ))
        })
        .unwrap()
        .unwrap();
    assert_eq!(out["marked"], serde_json::json!(["0452"]));
    let units = f
        .reader()
        .run(|c| {
            att::units_month(
                c,
                &f.sup.office(),
                &f.sup.calendar(),
                SITE,
                "2025-11",
                d("2025-11-13"),
                None,
            )
        })
        .unwrap()
        .unwrap();
    let mz = units.iter().find(|u| u.unit == "民政办").unwrap();
    assert_eq!((mz.patrols, mz.violations, mz.bundled.len()), (1, 1, 1));
    // Nobody punched in November: every working segment of both windows so far stood vacant
    // (9 working days from 11-03 to 11-13, two segments a day).
    assert_eq!(mz.vacant_segments, 18);
}

#[test]
fn commands_wait_for_their_answer_and_are_published_again_until_then() {
    use sunlight_hub::store::commands;
    let f = Fixture::new();
    let key = sunlight_protocol::DeviceKey::generate().unwrap();
    sunlight_hub::store::add_device(
        &f.path,
        &sunlight_protocol::SiteId::new(SITE).unwrap(),
        &sunlight_protocol::DeviceId::new("box-01").unwrap(),
        &key.public(),
    )
    .unwrap();
    let ids = f
        .writer()
        .run(|tx| {
            let staff = att::roster(tx, Some(SITE), true)?;
            commands::create_for_site(
                tx,
                SITE,
                "set_roster",
                &serde_json::json!({ "site": SITE, "staff": staff }),
                3_600_000,
                "admin",
            )
        })
        .unwrap();
    assert_eq!(ids.len(), 1);
    let w = f.writer();
    let now = sunlight_hub::store::now_ms();
    let due = commands::due(w.conn(), now, 60_000).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].topic, format!("sunlight/v1/{SITE}/box-01/down/cmd"));
    let payload: serde_json::Value = serde_json::from_slice(&due[0].payload).unwrap();
    assert_eq!(payload["kind"], "set_roster");
    let staff = payload["args"]["staff"].as_array().unwrap();
    assert_eq!(staff.len(), 4);
    let li = staff.iter().find(|s| s["staff_id"] == "0451").unwrap();
    assert!(li["pin_hash"].as_str().unwrap().starts_with("$argon2id$"));
    commands::mark_published(w.conn(), &ids[0], now).unwrap();
    assert!(
        commands::due(w.conn(), now + 1_000, 60_000)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        commands::due(w.conn(), now + 61_000, 60_000).unwrap().len(),
        1,
        "published again"
    );
    let answer = serde_json::json!({"cmd_id": ids[0], "ok": true, "detail": "4 staff"}).to_string();
    commands::apply_result(w.conn(), SITE, "box-01", &answer).unwrap();
    // Another box cannot answer for it; an answered command is not published again.
    commands::apply_result(w.conn(), SITE, "box-02", &answer).unwrap();
    assert!(
        commands::due(w.conn(), now + 61_000, 60_000)
            .unwrap()
            .is_empty()
    );
    let list = commands::list(w.conn(), Some(SITE), now).unwrap();
    assert_eq!(
        (list[0].state, list[0].detail.as_deref()),
        ("done", Some("4 staff"))
    );
}

#[test]
fn a_late_punch_photo_joins_the_clerk_s_nearest_punch() {
    let f = Fixture::new();
    f.punch("0451", "2025-11-13T08:29:10+08:00", None);
    f.punch("0451", "2025-11-13T12:01:00+08:00", None);
    let sha = "ab".repeat(32);
    let snapshot =
        serde_json::json!({"camera_id": "kiosk-cam", "sha256": sha, "bytes": 1000, "width": 640,
        "height": 480, "taken_at": "2025-11-13T00:29:12Z", "trigger": "punch", "staff_id": "0451"})
        .to_string();
    f.writer()
        .run(|tx| sunlight_hub::blobs::apply_snapshot(tx, SITE, "box-01", &snapshot))
        .unwrap();
    let board = f.board("2025-11-13");
    let w1 = board.iter().find(|w| w.window == "W1").unwrap();
    let punches = &w1
        .staff
        .iter()
        .find(|s| s.staff_id == "0451")
        .unwrap()
        .punches;
    assert_eq!(
        punches[0].photo.as_deref(),
        Some(format!("/api/v1/blobs/{sha}").as_str())
    );
    assert_eq!(punches[1].photo, None);
}

/// Today as the hub sees it during the day: a segment whose check-out window has not closed is
/// pending (未到时), neither absent nor vacant, and counts nowhere; the morning is judged once its
/// window has closed.
#[test]
fn segments_not_over_yet_are_pending_not_absent() {
    let f = Fixture::new();
    f.punch("0451", "2025-11-13T08:36:00+08:00", None);
    f.punch("0451", "2025-11-13T12:01:00+08:00", None);
    let at = |hm: &str| {
        Some(d("2025-11-13").and_time(chrono::NaiveTime::parse_from_str(hm, "%H:%M").unwrap()))
    };
    let board = |until| {
        f.reader()
            .run(|c| {
                att::board_at(
                    c,
                    &f.sup.office(),
                    &f.sup.calendar(),
                    SITE,
                    d("2025-11-13"),
                    until,
                )
            })
            .unwrap()
    };
    // 10:57: both segments still open; nobody is absent, no window is vacant yet.
    let b = board(at("10:57"));
    let w1 = b.iter().find(|w| w.window == "W1").unwrap();
    assert_eq!(verdicts(w1, "0451"), [Verdict::Pending, Verdict::Pending]);
    assert!(
        b.iter()
            .all(|w| w.segments.iter().all(|s| !s.vacant && !s.substituted))
    );
    // 15:00: the morning is over (0451 late, 0452 absent, W2 vacant); the afternoon is pending.
    let b = board(at("15:00"));
    let w1 = b.iter().find(|w| w.window == "W1").unwrap();
    let w2 = b.iter().find(|w| w.window == "W2").unwrap();
    assert_eq!(
        verdicts(w1, "0451"),
        [Verdict::Late { minutes: 6 }, Verdict::Pending]
    );
    assert_eq!(verdicts(w1, "0452"), [Verdict::Absent, Verdict::Pending]);
    assert!(w2.segments[0].vacant && !w2.segments[1].vacant);
    // A clerk's month as of 15:00 counts the morning only.
    let month = f.november("0452", d("2025-11-13"), at("15:00"));
    let whole = f.november("0452", d("2025-11-13"), None);
    assert_eq!(
        month.totals.absent + 1,
        whole.totals.absent,
        "the afternoon is not counted yet"
    );
    // The day is over: the board is the same as the fixed-day board.
    assert_eq!(
        serde_json::to_value(board(at("23:59"))).unwrap(),
        serde_json::to_value(f.board("2025-11-13")).unwrap()
    );
}
