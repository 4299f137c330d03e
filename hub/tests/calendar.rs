//! The calendar past the last official year (issue 15, decision 0014), through a real SQLite store
//! with the hub's fixed clock: a case reaching into 2027 gets its due day, light and every ladder
//! step on the provisional year of the statutory holidays, marked provisional in the API and in the
//! messages; attendance, leave-day counts, the report and the fleet's office hours take 2027's
//! statutory days off as days off, marked provisional, instead of guessing working days.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use std::sync::Arc;
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::HubConfig;
use sunlight_hub::oversight::attendance::Verdict;
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::store::{self, CaseFilter, Reader, Writer, attendance as att, notices};
use sunlight_hub::supervise::Supervision;

const SITE: &str = "suixian-shangshi";
const NOTE: &str = "暂按法定节假日计算，待录入 2027 年放假安排";

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const CONFIG: &str = r#"
[[contacts]]
role = "handler"
name = "李明"
to = "h-0451"
staff_id = "0451"
[[contacts]]
role = "supervisor"
name = "监察室"
to = "sup"
"#;

const ROSTER: &str = r#"
[[staff]]
site = "suixian-shangshi"
staff_id = "0451"
name = "李明"
unit = "民政办"
window = "W1"
role = "A"
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
        let f = Fixture {
            _dir: dir,
            path,
            config: Arc::new(HubConfig::parse(CONFIG).unwrap()),
            calendar: Arc::new(Calendar::official().unwrap()),
        };
        let staff = att::parse_roster(ROSTER).unwrap();
        let mut w = f.writer();
        let tx = w.transaction().unwrap();
        att::upsert_staff(&tx, &staff).unwrap();
        tx.commit().unwrap();
        f
    }

    /// The hub as `sunlight-hub run --today DAY` builds it.
    fn sup(&self, today: &str) -> Supervision {
        Supervision::new(
            self.calendar.clone(),
            HubClock::fixed(d(today)),
            self.config.clone(),
        )
        .unwrap()
    }

    fn writer(&self) -> Writer {
        Writer::open(&self.path).unwrap()
    }

    fn reader(&self) -> Reader {
        Reader::open(&self.path).unwrap()
    }

    fn accept(&self, no: &str, today: &str, days: u32) {
        self.stage(no, "accepted", today, days);
    }

    fn stage(&self, no: &str, stage: &str, today: &str, days: u32) {
        let sup = self.sup(today);
        let body =
            serde_json::json!({"case_no": no, "item_code": "MZ-001", "item_name": "老年优待证办理",
            "unit": "民政办", "window": "W1", "stage": stage, "staff_id": "0451",
            "kind": "promised", "limit_days": days})
            .to_string();
        let at = format!("{today}T09:00:00+08:00");
        self.writer()
            .run(|tx| store::cases::apply_event(tx, SITE, &at, &body, &sup, d(today)))
            .unwrap();
    }

    fn tick(&self, today: &str) {
        let sup = self.sup(today);
        self.writer()
            .run(|tx| store::cases::tick(tx, &sup, d(today)))
            .unwrap();
    }

    fn case(&self, no: &str) -> store::cases::CaseView {
        self.reader()
            .cases(&CaseFilter {
                open: Some(false),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .find(|c| c.case_no == no)
            .unwrap()
    }

    fn punch(&self, at: &str) {
        let body = serde_json::json!({"staff_id": "0451", "direction": "unspecified",
            "method": "card", "source": "zkteco-1"})
        .to_string();
        self.writer()
            .run(|tx| att::apply_punch(tx, SITE, at, &body, None))
            .unwrap();
    }
}

fn steps(c: &store::cases::CaseView) -> Vec<(String, String, bool)> {
    c.warnings
        .iter()
        .map(|w| (w.level.clone(), w.on_day.clone(), w.provisional))
        .collect()
}

#[test]
fn a_case_reaching_into_2027_gets_its_due_day_and_ladder_on_the_provisional_year() {
    let f = Fixture::new();
    // Accepted Monday 2026-12-21 with 20 working days: 12-22..25 and 12-28..31 are 8 (2026, the
    // official year), then 2027-01-01 (元旦, Friday) is off by law, so 01-04..08, 01-11..15 and
    // 01-18, 01-19 are the other 12: due Tuesday 2027-01-19.
    f.accept("C-2027", "2026-12-21", 20);
    for today in ["2026-12-28", "2027-01-04"] {
        f.tick(today);
        let c = f.case("C-2027");
        assert_eq!(c.problem, None, "{today}: a light, not a problem: {c:?}");
        assert_eq!(c.due.as_deref(), Some("2027-01-19"), "{today}");
        assert_eq!(c.level.as_deref(), Some("blue"), "{today}");
        assert!(c.provisional, "{today}: the due day rests on 2027");
        assert_eq!(c.provisional_year, Some(2027));
    }
    f.tick("2027-02-08");
    let c = f.case("C-2027");
    // Overdue by 3 working days on 01-22 already: the supervision letter, one step.
    assert_eq!(c.level.as_deref(), Some("supervision_letter"));
    assert_eq!(
        steps(&c),
        [
            ("blue".into(), "2026-12-21".into(), true),
            ("supervision_letter".into(), "2027-02-08".into(), true),
        ]
    );
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["provisional"], true, "the API field");
    assert_eq!(json["warnings"][1]["provisional"], true);

    // The messages of each step say what they rest on.
    let told = f
        .reader()
        .run(|c| notices::list(c, None, Some("case:suixian-shangshi:C-2027:"), 100))
        .unwrap();
    assert!(!told.is_empty());
    for n in &told {
        assert!(n.text.contains(NOTE), "{}", n.text);
    }
}

#[test]
fn every_step_of_the_ladder_falls_on_a_provisional_working_day() {
    let f = Fixture::new();
    f.accept("C-DAILY", "2026-12-21", 20);
    let mut day = d("2026-12-21");
    while day <= d("2027-02-12") {
        f.tick(&day.to_string());
        day = day.succ_opt().unwrap();
    }
    let c = f.case("C-DAILY");
    assert_eq!(
        steps(&c),
        [
            ("blue".into(), "2026-12-21".into(), true),
            // Monday 01-18: one working day (Tuesday) left.
            ("yellow_light".into(), "2027-01-18".into(), true),
            ("red_light".into(), "2027-01-19".into(), true),
            ("yellow_card".into(), "2027-01-20".into(), true),
            ("red_card".into(), "2027-01-21".into(), true),
            ("supervision_letter".into(), "2027-01-22".into(), true),
        ]
    );
}

#[test]
fn a_case_within_2026_is_not_marked() {
    let f = Fixture::new();
    // Monday 2026-11-02 + 5 working days: due Monday 11-09, all on the 2026 notice.
    f.accept("C-2026", "2026-11-02", 5);
    f.tick("2026-11-03");
    let c = f.case("C-2026");
    assert_eq!(c.due.as_deref(), Some("2026-11-09"));
    assert!(!c.provisional);
    assert_eq!(c.provisional_year, None);
}

fn verdicts(m: &att::StaffMonth, day: &str) -> Vec<Verdict> {
    m.days
        .iter()
        .find(|x| x.day == day)
        .map(|x| x.verdicts.iter().map(|v| v.verdict).collect())
        .unwrap_or_default()
}

#[test]
fn new_year_and_the_spring_festival_of_2027_are_days_off_for_attendance() {
    let f = Fixture::new();
    let sup = f.sup("2027-02-12");
    let (office, cal) = (sup.office(), sup.calendar());
    // Worked Monday 2027-01-04 in full, nothing on the holidays.
    f.punch("2027-01-04T08:25:00+08:00");
    f.punch("2027-01-04T12:05:00+08:00");
    f.punch("2027-01-04T13:55:00+08:00");
    f.punch("2027-01-04T17:35:00+08:00");
    let month = |m: &str| {
        f.reader()
            .run(|c| att::staff_month(c, &office, &cal, SITE, "0451", m, (d("2027-02-12"), None)))
            .unwrap()
            .unwrap()
    };
    let jan = month("2027-01");
    assert!(
        verdicts(&jan, "2027-01-01")
            .iter()
            .all(|v| *v == Verdict::NotRequired),
        "元旦 is a day off, not 旷工: {:?}",
        verdicts(&jan, "2027-01-01")
    );
    assert!(!verdicts(&jan, "2027-01-01").is_empty());
    assert!(
        verdicts(&jan, "2027-01-04")
            .iter()
            .all(|v| *v == Verdict::OnTime)
    );
    assert!(
        verdicts(&jan, "2027-01-05").contains(&Verdict::Absent),
        "an ordinary Tuesday without punches is still 旷工"
    );
    assert!(jan.provisional);
    assert_eq!(jan.provisional_year, Some(2027));
    let feb = month("2027-02");
    for day in [
        "2027-02-05",
        "2027-02-06",
        "2027-02-07",
        "2027-02-08",
        "2027-02-09",
        "2027-02-10",
    ] {
        let v = verdicts(&feb, day);
        assert!(
            !v.is_empty() && v.iter().all(|v| *v == Verdict::NotRequired),
            "春节 {day} is a day off: {v:?}"
        );
    }
    assert!(verdicts(&feb, "2027-02-11").contains(&Verdict::Absent));
    let json = serde_json::to_value(&feb).unwrap();
    assert_eq!(json["provisional"], true);
    assert_eq!(json["days"][0]["provisional"], true);

    // The board of the 春节 Monday: no window stands vacant.
    let board = f
        .reader()
        .run(|c| att::board(c, &office, &cal, SITE, d("2027-02-08")))
        .unwrap();
    assert!(!board.is_empty());
    for w in &board {
        assert!(
            w.segments.iter().all(|s| !s.vacant),
            "空岗 on a holiday: {w:?}"
        );
    }

    // Leave across the festival counts only its working days: 02-01..04 and 02-11..12.
    let period = sunlight_hub::report::Period::month("2027-02").unwrap();
    let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    assert_eq!(
        sunlight_hub::report::leave_days(
            &cal,
            t("2027-02-01 00:00:00"),
            t("2027-02-12 23:59:59"),
            &period
        ),
        6.0
    );
}

#[test]
fn the_fleet_has_no_office_hours_on_the_2027_holidays() {
    let f = Fixture::new();
    let sup = f.sup("2027-01-04");
    let (office, cal) = (sup.office(), sup.calendar());
    let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
    for holiday in [
        "2027-01-01T10:00:00+08:00",
        "2027-02-05T10:00:00+08:00",
        "2027-02-08T10:00:00+08:00",
        "2027-01-09T10:00:00+08:00", // a Saturday
    ] {
        assert!(
            !sunlight_hub::fleet::in_office_hours(&cal, &office, at(holiday)),
            "{holiday} is no office day"
        );
    }
    assert!(sunlight_hub::fleet::in_office_hours(
        &cal,
        &office,
        at("2027-01-04T10:00:00+08:00")
    ));
    // An offline alarm of a provisional office day says what it rests on.
    let mut conditions = vec![sunlight_hub::fleet::Condition {
        site: SITE.into(),
        device: "box-1".into(),
        kind: "offline".into(),
        detail: "no contact for 40 min (threshold 30 min in office hours)".into(),
    }];
    sunlight_hub::fleet::mark_provisional(&mut conditions, 2027);
    assert!(conditions[0].detail.ends_with(&format!("（{NOTE}）")));
}

#[test]
fn the_report_of_a_provisional_month_says_so() {
    let f = Fixture::new();
    f.accept("C-R", "2026-12-21", 20);
    let sup = f.sup("2027-01-31");
    let report = |month: &str, today: &str| {
        f.reader()
            .run(|c| {
                sunlight_hub::report::compute(
                    c,
                    &sup.office(),
                    &sup.calendar(),
                    &sunlight_hub::report::ReportScope::default(),
                    &sunlight_hub::report::Period::month(month).unwrap(),
                    d(today),
                )
            })
            .unwrap()
    };
    let jan = report("2027-01", "2027-01-31");
    assert!(jan.provisional);
    assert_eq!(jan.provisional_year, Some(2027));
    assert!(sunlight_hub::report::message(&jan).1.contains(NOTE));
    // December 2026 is official, but its case is due on a provisional day.
    let dec = report("2026-12", "2026-12-31");
    assert_eq!(dec.provisional_year, Some(2027));
    let nov = report("2026-11", "2026-11-30");
    assert!(!nov.provisional);
    assert!(!sunlight_hub::report::message(&nov).1.contains(NOTE));
}

/// A made-up 2027 arrangement (the State Council has not published 2027's yet; this is no guess
/// of it, only test data) in the holiday-cn JSON form: 春节 02-05..11 and two make-up Saturdays.
const TEST_2027_JSON: &str = r#"{"year": 2027, "days": [
  {"name": "元旦", "date": "2027-01-01", "isOffDay": true},
  {"name": "元旦", "date": "2027-01-02", "isOffDay": true},
  {"name": "元旦", "date": "2027-01-03", "isOffDay": true},
  {"name": "春节", "date": "2027-01-30", "isOffDay": false},
  {"name": "春节", "date": "2027-02-05", "isOffDay": true},
  {"name": "春节", "date": "2027-02-06", "isOffDay": true},
  {"name": "春节", "date": "2027-02-07", "isOffDay": true},
  {"name": "春节", "date": "2027-02-08", "isOffDay": true},
  {"name": "春节", "date": "2027-02-09", "isOffDay": true},
  {"name": "春节", "date": "2027-02-10", "isOffDay": true},
  {"name": "春节", "date": "2027-02-11", "isOffDay": true},
  {"name": "春节", "date": "2027-02-20", "isOffDay": false},
  {"name": "清明节", "date": "2027-04-05", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-01", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-02", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-03", "isOffDay": true},
  {"name": "劳动节", "date": "2027-05-04", "isOffDay": true},
  {"name": "端午节", "date": "2027-06-09", "isOffDay": true},
  {"name": "中秋节", "date": "2027-09-15", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-01", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-02", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-03", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-04", "isOffDay": true},
  {"name": "国庆节", "date": "2027-10-05", "isOffDay": true}
]}"#;

fn audit_rows(f: &Fixture) -> Vec<(String, String, String)> {
    f.reader()
        .run(|c| {
            c.prepare("SELECT action, target, detail FROM audit WHERE action LIKE 'calendar.%' ORDER BY rowid")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .unwrap()
}

#[test]
fn loading_the_official_year_moves_due_days_once_and_never_lowers_a_step() {
    let f = Fixture::new();
    // 40 working days from 2026-12-21 on the provisional year: due Monday 2027-02-22. On the
    // loaded file, Saturdays 01-30 and 02-20 are worked and 02-11 is off: due Saturday 02-20.
    f.accept("C-40", "2026-12-21", 40);
    // 4 working days from Monday 2027-02-01 on the provisional year: 02-02..04, then 02-11 after
    // the festival: due 02-11, red on 02-11. On the loaded file 02-11 is off: due Friday 02-12,
    // which would be one day left (yellow) on 02-11 — the red light already taken stays.
    f.accept("C-FEB", "2027-02-01", 4);
    // Completed on its provisional due day 01-19: on time, provisionally.
    f.accept("C-DONE", "2026-12-21", 20);
    f.stage("C-DONE", "completed", "2027-01-19", 20);
    f.tick("2027-02-11");
    let done = f.case("C-DONE");
    assert_eq!((done.open, done.provisional), (false, true));
    let (c40, feb) = (f.case("C-40"), f.case("C-FEB"));
    assert_eq!(
        (c40.due.as_deref(), c40.provisional),
        (Some("2027-02-22"), true)
    );
    assert_eq!(
        (feb.due.as_deref(), feb.level.as_deref(), feb.provisional),
        (Some("2027-02-11"), Some("red_light"), true)
    );
    let told_before = f
        .reader()
        .run(|c| notices::list(c, None, Some("case:"), 1000))
        .unwrap()
        .len();

    // A malformed file is refused with its line, and nothing changes.
    let sup = f.sup("2027-02-11");
    let bad = TEST_2027_JSON.replace("2027-09-15", "2027-09-31");
    let refused = f
        .writer()
        .run(
            |tx| match store::settings::import_calendar(tx, &bad, "admin", d("2027-02-11")) {
                Err(store::settings::ImportError::Refused(why)) => Ok(why),
                other => panic!("not refused: {other:?}"),
            },
        )
        .unwrap();
    assert!(
        refused.starts_with("line 20: \"2027-09-31\" is not a YYYY-MM-DD date"),
        "{refused}"
    );
    assert!(audit_rows(&f).is_empty());

    // The notice loaded: in force at once, cases re-evaluated in the same step.
    let imported = f
        .writer()
        .run(|tx| {
            let years =
                store::settings::import_calendar(tx, TEST_2027_JSON, "admin", d("2027-02-11"))
                    .map_err(|e| rusqlite::Error::InvalidParameterName(e.to_string()))?;
            sunlight_hub::supervise::reload_calendar(tx, &sup, d("2027-02-11"))
                .map_err(rusqlite::Error::InvalidParameterName)?;
            Ok(years)
        })
        .unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].before, "provisional");
    assert_eq!(
        imported[0]
            .changed
            .iter()
            .map(|(d, w)| (d.to_string(), *w))
            .collect::<Vec<_>>(),
        [
            ("2027-01-30".to_string(), true),
            ("2027-02-11".to_string(), false),
            ("2027-02-20".to_string(), true),
        ]
    );
    let audit = audit_rows(&f);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "calendar.import");
    assert_eq!(audit[0].1, "calendar:2027");
    assert!(
        audit[0].2.starts_with(
            "provisional → official (holiday-cn 2027); 3 days changed: 2027-01-30 off→working"
        ),
        "{}",
        audit[0].2
    );
    assert_eq!(
        sup.calendar()
            .provisional_in(d("2027-01-01"), d("2027-12-31")),
        None
    );

    let (c40, feb) = (f.case("C-40"), f.case("C-FEB"));
    assert_eq!(
        c40.due.as_deref(),
        Some("2027-02-20"),
        "the make-up Saturday counts"
    );
    assert!(!c40.provisional && c40.provisional_year.is_none());
    assert!(c40.warnings.iter().all(|w| !w.provisional));
    assert_eq!(feb.due.as_deref(), Some("2027-02-12"));
    let done = f.case("C-DONE");
    assert!(
        !done.provisional,
        "a completed case's verdict follows the loaded year too"
    );
    assert_eq!(feb.level.as_deref(), Some("red_light"), "never lowered");
    assert_eq!(
        steps(&feb),
        [
            ("blue".into(), "2027-02-01".into(), false),
            ("red_light".into(), "2027-02-11".into(), false),
        ],
        "one red light, not told again"
    );
    let told_after = f
        .reader()
        .run(|c| notices::list(c, None, Some("case:"), 1000))
        .unwrap()
        .len();
    assert_eq!(
        told_after, told_before,
        "re-evaluated once: nobody told twice"
    );

    // Another process (the running hub, whose calendar was built before the load) rebuilds its
    // calendar on its next tick.
    let running = f.sup("2027-02-11");
    assert!(
        running
            .calendar()
            .provisional_in(d("2027-02-20"), d("2027-02-20"))
            .is_some()
    );
    let mut w = f.writer();
    sunlight_hub::supervise::run_tick(&mut w, &running, d("2027-02-11"), 100).unwrap();
    assert!(running.calendar().is_workday(d("2027-02-20")).unwrap());
    assert_eq!(
        running
            .calendar()
            .provisional_in(d("2027-01-01"), d("2027-12-31")),
        None
    );
}
