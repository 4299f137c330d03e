//! The supervision engine through a real SQLite store, with fixed clocks and the real calendar:
//! the warning ladder with its notifications and the supervision letter, each made once however
//! often the case is re-evaluated and across reopened connections; delivery with retries and
//! digests; ratings with work orders and the 7-day default; the complaints queue; the item catalog.

use chrono::NaiveDate;
use std::sync::{Arc, Mutex};
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::notify::{self, Notifier, SendFuture};
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::store::{self, CaseFilter, Reader, Writer, notices};
use sunlight_hub::supervise::Supervision;

const SITE: &str = "suixian-shangshi";

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const CONFIG: &str = r#"
[notify]
retry_secs = 1
[notify.digest]
roles = ["leadership"]
[[contacts]]
role = "handler"
name = "李明"
to = "h-0451"
staff_id = "0451"
[[contacts]]
role = "unit_chief"
name = "民政办 chief"
to = "chief-mz"
unit = "民政办"
[[contacts]]
role = "supervisor"
name = "监察室"
to = "sup"
[[contacts]]
role = "leadership"
name = "副县长"
to = "lead"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    config: Arc<HubConfig>,
    calendar: Arc<Calendar>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        Fixture {
            _dir: dir,
            path,
            config: Arc::new(HubConfig::parse(CONFIG).unwrap()),
            calendar: Arc::new(Calendar::official().unwrap()),
        }
    }

    fn sup(&self, today: &str) -> Supervision {
        Supervision::new(
            self.calendar.clone(),
            HubClock::fixed(d(today)),
            self.config.clone(),
        )
        .unwrap()
    }

    /// A fresh write connection each time, as after a restart.
    fn writer(&self) -> Writer {
        Writer::open(&self.path).unwrap()
    }

    fn reader(&self) -> Reader {
        Reader::open(&self.path).unwrap()
    }

    fn case(&self, today: &str, at: &str, body: serde_json::Value) {
        let sup = self.sup(today);
        self.writer()
            .run(|tx| store::cases::apply_event(tx, SITE, at, &body.to_string(), &sup, d(today)))
            .unwrap();
    }

    fn event(&self, kind: &str, today: &str, at: &str, body: serde_json::Value) {
        let sup = self.sup(today);
        let body = body.to_string();
        self.writer()
            .run(|tx| match kind {
                "rating" => {
                    store::ratings::apply_event(tx, &sup.config(), &sup.calendar(), SITE, at, &body)
                }
                "complaint" => store::complaints::apply_event(
                    tx,
                    &sup.config(),
                    &sup.calendar(),
                    SITE,
                    at,
                    &body,
                ),
                _ => unreachable!(),
            })
            .unwrap();
    }

    fn tick(&self, today: &str) -> usize {
        let sup = self.sup(today);
        self.writer()
            .run(|tx| store::cases::tick(tx, &sup, d(today)))
            .unwrap()
    }

    fn notices(&self) -> Vec<notices::NoticeView> {
        self.reader()
            .run(|c| notices::list(c, None, None, 1000))
            .unwrap()
    }
}

fn stage(no: &str, stage: &str, days: u32) -> serde_json::Value {
    serde_json::json!({"case_no": no, "item_code": "MZ-001", "item_name": "老年优待证办理", "unit": "民政办",
        "window": "W1", "stage": stage, "staff_id": "0451", "kind": "promised", "limit_days": days})
}

/// Records every delivery; fails the first `fail_first` attempts.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<notices::Outgoing>>,
    fail_first: Mutex<u32>,
}

impl Notifier for Recorder {
    fn channel(&self) -> &'static str {
        "test"
    }
    fn send<'a>(&'a self, m: &'a notices::Outgoing) -> SendFuture<'a> {
        Box::pin(async move {
            let mut fail = self.fail_first.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err("gateway down".into());
            }
            self.sent.lock().unwrap().push(m.clone());
            Ok(())
        })
    }
}

fn deliver(f: &Fixture, today: &str, recorder: &Recorder) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    notify::round(
        &mut f.writer(),
        &f.config,
        &HubClock::fixed(d(today)),
        recorder,
        &rt,
    )
    .unwrap()
}

#[test]
fn the_ladder_tells_each_step_once_and_issues_one_numbered_letter() {
    let f = Fixture::new();
    let recorder = Recorder::default();
    // Accepted Friday 2025-09-26 with 5 working days: Sunday 09-28 is a make-up working day and
    // 10-01..08 are holidays, so the case is due Friday 10-10 (counted: 28, 29, 30, 09, 10), and
    // Saturday 10-11 is a make-up working day: the first day overdue.
    f.case(
        "2025-09-26",
        "2025-09-26T09:00:00+08:00",
        stage("C-9", "accepted", 5),
    );
    let days = [
        "2025-09-26",
        "2025-09-29",
        "2025-09-30",
        "2025-10-01",
        "2025-10-05",
        "2025-10-09",
        "2025-10-10",
        "2025-10-11",
        "2025-10-13",
        "2025-10-14",
        "2025-10-15",
    ];
    for day in days {
        // Ticks twice a day and re-delivers: nothing is told twice.
        f.tick(day);
        f.tick(day);
        deliver(&f, day, &recorder);
        deliver(&f, day, &recorder);
    }
    let cases = f
        .reader()
        .cases(&CaseFilter {
            open: Some(false),
            ..Default::default()
        })
        .unwrap();
    let c = &cases[0];
    assert_eq!(c.due.as_deref(), Some("2025-10-10"), "{c:?}");
    let levels: Vec<_> = c
        .warnings
        .iter()
        .map(|w| (w.level.as_str(), w.on_day.as_str()))
        .collect();
    assert_eq!(
        levels,
        [
            ("blue", "2025-09-26"),
            ("yellow_light", "2025-10-09"),
            ("red_light", "2025-10-10"),
            ("yellow_card", "2025-10-11"),
            ("red_card", "2025-10-13"),
            ("supervision_letter", "2025-10-14"),
        ]
    );
    // Who heard what: the ladder of OVERSIGHT.md §2, each message once.
    let sent = recorder.sent.lock().unwrap();
    let mut told: Vec<(String, String)> = sent
        .iter()
        .filter(|m| m.key.starts_with("case:"))
        .map(|m| (m.key.split(':').nth(3).unwrap().to_owned(), m.to.clone()))
        .collect();
    told.sort();
    let mut expected: Vec<(String, String)> = [
        ("yellow_light", "h-0451"),
        ("red_light", "h-0451"),
        ("red_light", "chief-mz"),
        ("yellow_card", "chief-mz"),
        ("yellow_card", "sup"),
        ("red_card", "sup"),
        ("supervision_letter", "chief-mz"),
        ("supervision_letter", "sup"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    expected.sort();
    assert_eq!(told, expected);
    // Leadership's red card went into the digest of its day, sent the next day, once.
    let digests: Vec<_> = sent
        .iter()
        .filter(|m| m.key.starts_with("digest:"))
        .collect();
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(digests[0].key, "digest:2025-10-13:lead");
    assert!(digests[0].text.contains("红牌"), "{}", digests[0].text);
    // The letter: numbered, its document names the unit and the case, never issued twice.
    let letters = f
        .reader()
        .run(|c| store::letters::list(c, None, None, 10))
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].number, "监建〔2025〕1号");
    assert_eq!(letters[0].overdue_days, 3);
    let doc = f
        .reader()
        .run(|c| store::letters::document(c, letters[0].id))
        .unwrap()
        .unwrap();
    assert!(doc.contains("监察建议书") && doc.contains("C-9") && doc.contains("民政办"));
    let letter_msg = sent
        .iter()
        .find(|m| m.key.contains("supervision_letter") && m.to == "sup")
        .unwrap();
    assert!(
        letter_msg.text.contains("监建〔2025〕1号"),
        "{}",
        letter_msg.text
    );
    // A second overdue case gets the next number.
    f.case(
        "2025-10-15",
        "2025-10-09T09:00:00+08:00",
        stage("C-10", "accepted", 1),
    );
    let letters = f
        .reader()
        .run(|c| store::letters::list(c, None, None, 10))
        .unwrap();
    assert_eq!(letters[0].number, "监建〔2025〕2号");
}

#[test]
fn failed_deliveries_are_retried_and_missing_contacts_are_shown() {
    let f = Fixture::new();
    // A case of a unit with no chief on file and a handler without a contact.
    let mut body = stage("C-1", "accepted", 1);
    body["unit"] = "林业站".into();
    body["staff_id"] = "0999".into();
    // Synced on its due day: straight to the red light → handler and unit chief.
    f.case("2025-11-04", "2025-11-03T09:00:00+08:00", body);
    let missing: Vec<_> = f
        .notices()
        .into_iter()
        .filter(|n| n.status == "no_contact")
        .map(|n| n.role)
        .collect();
    assert_eq!(missing.len(), 2, "{missing:?}");
    // A case that has contacts, with a gateway failing twice.
    f.case(
        "2025-11-04",
        "2025-11-03T09:00:00+08:00",
        stage("C-2", "accepted", 1),
    );
    let recorder = Recorder {
        fail_first: Mutex::new(2),
        ..Default::default()
    };
    assert_eq!(deliver(&f, "2025-11-04", &recorder), 0);
    let pending: Vec<_> = f
        .notices()
        .into_iter()
        .filter(|n| n.status == "pending")
        .collect();
    assert!(
        pending
            .iter()
            .any(|n| n.attempts == 1 && n.last_error.as_deref() == Some("gateway down"))
    );
    // Retried after the back-off (1 s, then 2 s).
    let mut delivered = 0;
    for _ in 0..40 {
        delivered += deliver(&f, "2025-11-04", &recorder);
        if delivered == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(delivered, 2);
    assert_eq!(recorder.sent.lock().unwrap().len(), 2);
}

#[test]
fn bad_ratings_open_work_orders_followed_to_the_end() {
    let f = Fixture::new();
    f.case(
        "2025-11-03",
        "2025-11-03T09:00:00+08:00",
        stage("C-1", "accepted", 3),
    );
    f.case(
        "2025-11-04",
        "2025-11-04T09:00:00+08:00",
        stage("C-1", "completed", 3),
    );
    // 不满意 on Friday 11-07: callback due Monday 11-10, fix due Friday 11-14.
    f.event(
        "rating",
        "2025-11-07",
        "2025-11-07T10:00:00+08:00",
        serde_json::json!({"case_no": "C-1", "level": 2, "channel": "pad", "comment": "等太久"}),
    );
    // The same case rated again on the same channel: kept, not counted, no second order.
    f.event(
        "rating",
        "2025-11-07",
        "2025-11-07T10:05:00+08:00",
        serde_json::json!({"case_no": "C-1", "level": 1, "channel": "pad"}),
    );
    let orders = f
        .reader()
        .run(|c| store::ratings::list(c, None, None, None, 10))
        .unwrap();
    assert_eq!(orders.len(), 1);
    let o = &orders[0];
    assert_eq!(
        (
            o.unit.as_str(),
            o.callback_due.as_deref(),
            o.fix_due.as_deref()
        ),
        ("民政办", Some("2025-11-10"), Some("2025-11-14"))
    );
    // The unit chief is told.
    assert!(
        f.notices()
            .iter()
            .any(|n| n.key.starts_with("work_order:") && n.to.as_deref() == Some("chief-mz"))
    );
    use store::ratings::{ActError, Classification, WorkOrderAction as A};
    let mut w = f.writer();
    let act = |w: &mut Writer, a: A, day: &str| {
        w.run(|tx| Ok(store::ratings::act(tx, o.id, &a, d(day))))
            .unwrap()
    };
    // Out of order: refused with the next step named.
    let e = act(
        &mut w,
        A::Fix {
            by: "王".into(),
            note: "x".into(),
        },
        "2025-11-07",
    )
    .unwrap_err();
    assert!(
        matches!(&e, ActError::Conflict(m) if m.contains("callback")),
        "{e}"
    );
    act(
        &mut w,
        A::Callback {
            by: "王".into(),
            note: "已回访".into(),
        },
        "2025-11-10",
    )
    .unwrap();
    act(
        &mut w,
        A::Classify {
            by: "王".into(),
            classification: Classification::Upheld,
            note: None,
        },
        "2025-11-10",
    )
    .unwrap();
    let e = act(
        &mut w,
        A::Feedback {
            by: "王".into(),
            note: "x".into(),
        },
        "2025-11-11",
    )
    .unwrap_err();
    assert!(matches!(e, ActError::Conflict(_)));
    act(
        &mut w,
        A::Fix {
            by: "王".into(),
            note: "增开窗口".into(),
        },
        "2025-11-12",
    )
    .unwrap();
    let done = act(
        &mut w,
        A::Feedback {
            by: "王".into(),
            note: "已告知".into(),
        },
        "2025-11-13",
    )
    .unwrap();
    assert_eq!(done.status, "closed");
    assert_eq!(done.history.as_array().unwrap().len(), 5);
    // Rates for November: one completion on time and early, one counted rating (bad), orders on time.
    let rates = f
        .reader()
        .run(|c| {
            store::rates::figures(
                c,
                store::rates::GroupBy::Unit,
                None,
                d("2025-11-01"),
                d("2025-11-30"),
            )
        })
        .unwrap();
    let r = &rates[0];
    assert_eq!((r.completed, r.on_time, r.early), (1, 1, 1));
    assert_eq!(
        (r.ratings, r.bad_ratings, r.satisfaction_rate),
        (1, 1, Some(0.0))
    );
    assert_eq!(
        (r.work_orders, r.callback_rate, r.fix_rate),
        (1, Some(1.0), Some(1.0))
    );
}

#[test]
fn unrated_cases_count_as_basically_satisfied_after_seven_days() {
    let f = Fixture::new();
    for no in ["C-1", "C-2"] {
        f.case(
            "2025-11-03",
            "2025-11-03T09:00:00+08:00",
            stage(no, "accepted", 3),
        );
        f.case(
            "2025-11-03",
            "2025-11-03T16:00:00+08:00",
            stage(no, "completed", 3),
        );
    }
    f.event(
        "rating",
        "2025-11-04",
        "2025-11-04T10:00:00+08:00",
        serde_json::json!({"case_no": "C-2", "level": 5, "channel": "sms"}),
    );
    f.tick("2025-11-09");
    let ratings = |no| {
        f.reader()
            .run(|c| store::ratings::for_case(c, SITE, no))
            .unwrap()
    };
    assert!(ratings("C-1").is_empty(), "not yet seven days");
    f.tick("2025-11-10");
    f.tick("2025-11-11");
    let r = ratings("C-1");
    assert_eq!(r.len(), 1);
    assert!(
        r[0].defaulted && r[0].level == 3 && r[0].day == "2025-11-10",
        "{r:?}"
    );
    assert_eq!(
        ratings("C-2").len(),
        1,
        "a rated case keeps its own rating only"
    );
    // A real rating that arrives late (synced after an outage) replaces the default.
    f.event(
        "rating",
        "2025-11-12",
        "2025-11-05T10:00:00+08:00",
        serde_json::json!({"case_no": "C-1", "level": 4, "channel": "pad"}),
    );
    let r = ratings("C-1");
    assert_eq!((r.len(), r[0].level, r[0].defaulted), (1, 4, false));
}

#[test]
fn complaints_move_through_the_queue_in_order_with_due_days() {
    let f = Fixture::new();
    let body = serde_json::json!({"complaint_no": "TS-1", "channel": "12345", "about": {"unit": "民政办", "window": "W1"},
        "text": "窗口无人", "contact": "138****0000"});
    f.event(
        "complaint",
        "2025-09-26",
        "2025-09-26T09:00:00+08:00",
        body.clone(),
    );
    // Sent twice: one complaint.
    f.event("complaint", "2025-09-26", "2025-09-26T09:00:00+08:00", body);
    let get = |today| {
        f.reader()
            .run(|c| store::complaints::get(c, SITE, "TS-1", d(today)))
            .unwrap()
            .unwrap()
    };
    let c = get("2025-09-26");
    // 3 working days after Friday 09-26: Sun 09-28 (调休), Mon 09-29, Tue 09-30.
    assert_eq!(
        (c.stage.as_str(), c.next_due.as_deref(), c.overdue),
        ("received", Some("2025-09-30"), false)
    );
    assert!(get("2025-10-09").overdue);
    use store::complaints::{Advance, AdvanceError, Step};
    let adv = |to, upheld| Advance {
        to,
        by: "监察室".into(),
        note: String::new(),
        upheld,
    };
    let mut w = f.writer();
    let e = w
        .run(|tx| {
            Ok(store::complaints::advance(
                tx,
                SITE,
                "TS-1",
                &adv(Step::Handling, None),
                d("2025-09-29"),
            ))
        })
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&e, AdvanceError::Conflict(m) if m.contains("investigating")),
        "{e}"
    );
    for step in [Step::Investigating, Step::Handling, Step::Feedback] {
        w.run(|tx| {
            Ok(store::complaints::advance(
                tx,
                SITE,
                "TS-1",
                &adv(step, None),
                d("2025-09-29"),
            ))
        })
        .unwrap()
        .unwrap();
    }
    let e = w
        .run(|tx| {
            Ok(store::complaints::advance(
                tx,
                SITE,
                "TS-1",
                &adv(Step::Archived, None),
                d("2025-09-29"),
            ))
        })
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("upheld"), "{e}");
    let c = w
        .run(|tx| {
            Ok(store::complaints::advance(
                tx,
                SITE,
                "TS-1",
                &adv(Step::Archived, Some(true)),
                d("2025-09-30"),
            ))
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.stage.as_str(), c.outcome.as_deref(), c.overdue),
        ("archived", Some("upheld"), false)
    );
    // The supervisor was told when it arrived, once.
    let told: Vec<_> = f
        .notices()
        .into_iter()
        .filter(|n| n.key.starts_with("complaint:"))
        .collect();
    assert_eq!(told.len(), 1);
}

#[test]
fn the_catalog_flags_fees_on_free_items_and_supplies_missing_limits() {
    let f = Fixture::new();
    f.writer()
        .run(|tx| store::items::upsert(tx, &store::items::parse(store::items::DEMO).unwrap()))
        .unwrap();
    let mut body = stage("C-1", "accepted", 5);
    body["fee_yuan"] = 20.into();
    f.case("2025-11-03", "2025-11-03T09:00:00+08:00", body);
    let mut body = stage("C-2", "accepted", 90); // beyond the statutory 60
    body["item_code"] = "MZ-001".into();
    f.case("2025-11-03", "2025-11-03T09:00:00+08:00", body);
    let cases = f.reader().cases(&CaseFilter::default()).unwrap();
    let anomalies = |no: &str| -> String {
        cases.iter().find(|c| c.case_no == no).unwrap().state["anomalies"].to_string()
    };
    assert!(
        anomalies("C-1").contains("违规收费"),
        "{}",
        anomalies("C-1")
    );
    assert!(
        anomalies("C-2").contains("超法定时限"),
        "{}",
        anomalies("C-2")
    );
}

#[test]
fn the_three_lists_of_seed_002() {
    let f = Fixture::new();
    f.case(
        "2025-11-03",
        "2025-11-03T09:00:00+08:00",
        stage("T", "accepted", 3),
    );
    f.case(
        "2025-11-03",
        "2025-11-03T09:00:00+08:00",
        stage("D", "accepted", 3),
    );
    f.case(
        "2025-11-03",
        "2025-11-03T10:00:00+08:00",
        stage("D", "undertaken", 3),
    );
    f.case(
        "2025-11-03",
        "2025-11-03T09:00:00+08:00",
        stage("X", "accepted", 3),
    );
    f.case(
        "2025-11-03",
        "2025-11-03T15:00:00+08:00",
        stage("X", "completed", 3),
    );
    let view = |v: &str| -> Vec<String> {
        f.reader()
            .cases(&CaseFilter {
                view: Some(v.into()),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|c| c.case_no)
            .collect()
    };
    assert_eq!(view("todo"), ["T"]);
    assert_eq!(view("doing"), ["D"]);
    assert_eq!(view("done"), ["X"]);
    let detail = f
        .reader()
        .run(|c| store::cases::detail(c, SITE, "X"))
        .unwrap()
        .unwrap();
    let stages: Vec<_> = detail.timeline.iter().map(|t| t.stage.as_str()).collect();
    assert_eq!(stages, ["accepted", "completed"]);
}

#[test]
fn a_pause_past_its_sub_limit_is_flagged_once() {
    let f = Fixture::new();
    f.case(
        "2025-11-03",
        "2025-11-03T09:00:00+08:00",
        stage("C-1", "accepted", 10),
    );
    let mut pause = stage("C-1", "paused", 10);
    pause["pause_reason"] = "申请材料需补正".into();
    f.case("2025-11-04", "2025-11-04T09:00:00+08:00", pause);
    // 补正 may pause 5 working days: through Tuesday 11-11.
    f.tick("2025-11-11");
    let flagged = || {
        f.notices()
            .into_iter()
            .filter(|n| n.key.contains(":pause:"))
            .map(|n| n.to)
            .collect::<Vec<_>>()
    };
    assert!(flagged().is_empty());
    f.tick("2025-11-12");
    f.tick("2025-11-12");
    f.tick("2025-11-13");
    assert_eq!(flagged(), [Some("sup".to_owned())]);
    let detail = f
        .reader()
        .run(|c| store::cases::detail(c, SITE, "C-1"))
        .unwrap()
        .unwrap();
    let levels: Vec<_> = detail
        .case
        .warnings
        .iter()
        .map(|w| w.level.as_str())
        .collect();
    assert_eq!(levels, ["blue", "pause_overdue"]);
}

#[test]
fn the_tick_covers_every_due_case_in_short_transactions() {
    let f = Fixture::new();
    for i in 0..7 {
        f.case(
            "2025-11-03",
            "2025-11-03T09:00:00+08:00",
            stage(&format!("C-{i}"), "accepted", 3),
        );
    }
    // Due Thursday 11-06: on Wednesday every case turns yellow, two cases per transaction.
    let sup = f.sup("2025-11-05");
    let n = sunlight_hub::supervise::run_tick(&mut f.writer(), &sup, d("2025-11-05"), 2).unwrap();
    assert_eq!(n, 7);
    let cases = f.reader().cases(&CaseFilter::default()).unwrap();
    assert!(
        cases
            .iter()
            .all(|c| c.level.as_deref() == Some("yellow_light"))
    );
    // Nothing is due again the same day.
    let again =
        sunlight_hub::supervise::run_tick(&mut f.writer(), &sup, d("2025-11-05"), 2).unwrap();
    assert_eq!(again, 0);
}
