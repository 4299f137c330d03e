//! The monthly window work report against a hand-computed fixture month (November 2025, 20
//! working days, winter hours 08:30–12:00 and 14:00–17:00): cases, warnings, punches, leave,
//! make-up punches, patrols, ratings with a work order, and complaints are put into a real store
//! through the hub's own write paths, day by day with the oversight tick as the hub would run it,
//! and every figure of the report is compared with the value worked out by hand in the comments.
//! Then the weekly variant, a unit's scope, the county, and the XLSX and CSV exports read back.

use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::sync::Arc;
use sunlight_hub::clock::HubClock;
use sunlight_hub::config::{Contact, HubConfig, Role};
use sunlight_hub::dashboard::html::Lang;
use sunlight_hub::notify;
use sunlight_hub::oversight::calendar::Calendar;
use sunlight_hub::report::{self, Period, Report, ReportScope, UnitRow, export};
use sunlight_hub::store::{self, Reader, Writer, attendance as att, complaints, ratings};
use sunlight_hub::supervise::Supervision;

const A: &str = "suixian-shangshi";
const B: &str = "suixian-lishan";
const TODAY: &str = "2025-12-10";

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
[[staff]]
site = "suixian-shangshi"
staff_id = "0701"
name = "钱进"
unit = "财政所"
window = "W3"
role = "A"
[[staff]]
site = "suixian-shangshi"
staff_id = "0801"
name = "孙丽"
unit = "社保所"
window = "W4"
role = "A"
[[staff]]
site = "suixian-lishan"
staff_id = "L01"
name = "陈一"
unit = "民政办"
window = "W1"
role = "A"
"#;

/// What happens on one day, applied in this order, then the day's tick.
#[derive(Default)]
struct Day {
    cases: Vec<(&'static str, String, serde_json::Value)>,
    ratings: Vec<(&'static str, String, serde_json::Value)>,
    complaints: Vec<(String, serde_json::Value)>,
}

fn day_of<'a>(days: &'a mut BTreeMap<String, Day>, day: &str) -> &'a mut Day {
    days.entry(day.to_owned()).or_default()
}

fn case(
    no: &str,
    unit: &str,
    window: &str,
    staff: &str,
    stage: &str,
    kind: &str,
    limit: u32,
) -> serde_json::Value {
    serde_json::json!({"case_no": no, "item_code": "X-1", "item_name": "事项", "unit": unit, "window": window,
        "stage": stage, "staff_id": staff, "kind": kind, "limit_days": limit, "limit_unit": "working"})
}

fn at(day: &str, hm: &str) -> String {
    format!("{day}T{hm}:00+08:00")
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sup: Supervision,
}

impl Fixture {
    fn reader(&self) -> Reader {
        Reader::open(&self.path).unwrap()
    }

    fn report(&self, scope: ReportScope, period: &Period) -> Report {
        self.reader()
            .run(|c| {
                report::compute(
                    c,
                    &self.sup.office(),
                    &self.sup.calendar(),
                    &scope,
                    period,
                    d(TODAY),
                )
            })
            .unwrap()
    }
}

fn sup_on(cal: &Arc<Calendar>, config: &Arc<HubConfig>, day: NaiveDate) -> Supervision {
    Supervision::new(cal.clone(), HubClock::fixed(day), config.clone()).unwrap()
}

/// The fixture month. Cases (staff 0451 for 民政办, 0611 for 林业站, 0801 for 社保所):
/// - M0 民政办 promised 5, accepted 10-20, completed 10-22 (October: only in the trend);
/// - M1, M2 民政办 immediate, accepted and completed 11-03 / 11-04 (a red light each on acceptance:
///   an immediate case is due the day it is accepted);
/// - M3 民政办 promised 5, accepted 11-05 (due 11-12), completed 11-07: early;
/// - M4 民政办 promised 3, accepted 11-10 (due 11-13), completed 11-17: late; yellow light 11-12,
///   red light 11-13, yellow card 11-14;
/// - M5 民政办 promised 10, accepted 11-25, open (lights only in December);
/// - M6 民政办 promised 3, accepted 10-30 (due 11-04), completed 11-03: early;
/// - F1 林业站 promised 3, accepted 11-03 (due 11-06), never completed: yellow light 11-05, red
///   light 11-06, yellow card 11-07, red card 11-10, supervision letter 11-11;
/// - F2 林业站 immediate, 11-20, completed the same day (red light on acceptance);
/// - F3 林业站 immediate, accepted 11-21, completed 11-24: late (red light on acceptance);
/// - S1 社保所 promised 5, accepted 11-10 (due 11-17), completed 11-12: early;
/// - B1 at township B, 民政办 immediate, 11-05, completed the same day.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let cal = Arc::new(Calendar::official().unwrap());
    let config = Arc::new(HubConfig::default());
    let mut w = Writer::open(&path).unwrap();
    w.run(|tx| {
        att::upsert_staff(tx, &att::parse_roster(ROSTER).unwrap()).unwrap();
        Ok(())
    })
    .unwrap();

    let mut cases: Vec<(&str, &str, &'static str, serde_json::Value)> = Vec::new();
    let mut add_case =
        |day: &'static str, hm: &'static str, site: &'static str, body: serde_json::Value| {
            cases.push((day, hm, site, body));
        };
    let p = "promised";
    let i = "immediate";
    add_case(
        "2025-10-20",
        "09:00",
        A,
        case("M0", "民政办", "W1", "0451", "accepted", p, 5),
    );
    add_case(
        "2025-10-22",
        "15:00",
        A,
        case("M0", "民政办", "W1", "0451", "completed", p, 5),
    );
    add_case(
        "2025-10-30",
        "09:00",
        A,
        case("M6", "民政办", "W1", "0451", "accepted", p, 3),
    );
    add_case(
        "2025-11-03",
        "09:00",
        A,
        case("M1", "民政办", "W1", "0451", "accepted", i, 0),
    );
    add_case(
        "2025-11-03",
        "09:30",
        A,
        case("M6", "民政办", "W1", "0451", "completed", p, 3),
    );
    add_case(
        "2025-11-03",
        "10:00",
        A,
        case("F1", "林业站", "W2", "0611", "accepted", p, 3),
    );
    add_case(
        "2025-11-03",
        "15:00",
        A,
        case("M1", "民政办", "W1", "0451", "completed", i, 0),
    );
    add_case(
        "2025-11-04",
        "09:00",
        A,
        case("M2", "民政办", "W1", "0451", "accepted", i, 0),
    );
    add_case(
        "2025-11-04",
        "11:00",
        A,
        case("M2", "民政办", "W1", "0451", "completed", i, 0),
    );
    add_case(
        "2025-11-05",
        "09:00",
        A,
        case("M3", "民政办", "W1", "0451", "accepted", p, 5),
    );
    add_case(
        "2025-11-05",
        "09:00",
        B,
        case("B1", "民政办", "W1", "L01", "accepted", i, 0),
    );
    add_case(
        "2025-11-05",
        "10:00",
        B,
        case("B1", "民政办", "W1", "L01", "completed", i, 0),
    );
    add_case(
        "2025-11-07",
        "15:00",
        A,
        case("M3", "民政办", "W1", "0451", "completed", p, 5),
    );
    add_case(
        "2025-11-10",
        "09:00",
        A,
        case("M4", "民政办", "W1", "0451", "accepted", p, 3),
    );
    add_case(
        "2025-11-10",
        "09:30",
        A,
        case("S1", "社保所", "W4", "0801", "accepted", p, 5),
    );
    add_case(
        "2025-11-12",
        "15:00",
        A,
        case("S1", "社保所", "W4", "0801", "completed", p, 5),
    );
    add_case(
        "2025-11-17",
        "15:00",
        A,
        case("M4", "民政办", "W1", "0451", "completed", p, 3),
    );
    add_case(
        "2025-11-20",
        "09:00",
        A,
        case("F2", "林业站", "W2", "0611", "accepted", i, 0),
    );
    add_case(
        "2025-11-20",
        "10:00",
        A,
        case("F2", "林业站", "W2", "0611", "completed", i, 0),
    );
    add_case(
        "2025-11-21",
        "09:00",
        A,
        case("F3", "林业站", "W2", "0611", "accepted", i, 0),
    );
    add_case(
        "2025-11-24",
        "16:00",
        A,
        case("F3", "林业站", "W2", "0611", "completed", i, 0),
    );
    add_case(
        "2025-11-25",
        "09:00",
        A,
        case("M5", "民政办", "W1", "0451", "accepted", p, 10),
    );
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for (day, hm, site, body) in cases {
        day_of(&mut days, day).cases.push((site, at(day, hm), body));
    }
    // Ratings (5 非常满意 … 1 非常不满意). M3's second rating on the same channel is not counted.
    // Unrated completed cases get 基本满意 (3) seven days after completion, from the tick: M6 on
    // 11-10, M4 on 11-24, B1 on 11-12 (all November), F3 on 12-01 (December), M0 on 10-29.
    let rating =
        |no: &str, level: u8| serde_json::json!({"case_no": no, "level": level, "channel": "pad"});
    for (day, hm, no, level) in [
        ("2025-11-03", "15:10", "M1", 5),
        ("2025-11-04", "11:10", "M2", 4),
        ("2025-11-07", "15:10", "M3", 2),
        ("2025-11-07", "15:20", "M3", 1),
        ("2025-11-12", "15:10", "S1", 5),
        ("2025-11-20", "10:10", "F2", 3),
    ] {
        day_of(&mut days, day)
            .ratings
            .push((A, at(day, hm), rating(no, level)));
    }
    // Complaints: C1 about 0611 of 林业站 (upheld at archiving), C2 about 民政办 (still open), C3
    // in December.
    for (day, no, about) in [
        (
            "2025-11-12",
            "C1",
            serde_json::json!({"unit": "林业站", "staff_id": "0611"}),
        ),
        ("2025-11-18", "C2", serde_json::json!({"unit": "民政办"})),
        ("2025-12-02", "C3", serde_json::json!({"unit": "民政办"})),
    ] {
        day_of(&mut days, day).complaints.push((
            at(day, "10:00"),
            serde_json::json!({"complaint_no": no, "channel": "12345", "about": about, "text": "态度不好"}),
        ));
    }

    // Day by day from 10-20 to today: the day's events as ingest applies them, then the tick.
    let mut day = d("2025-10-20");
    while day <= d(TODAY) {
        let sup = sup_on(&cal, &config, day);
        let key = day.to_string();
        let todo = days.remove(&key).unwrap_or_default();
        w.run(|tx| {
            for (site, when, body) in &todo.cases {
                store::cases::apply_event(tx, site, when, &body.to_string(), &sup, day)?;
            }
            for (site, when, body) in &todo.ratings {
                ratings::apply_event(
                    tx,
                    &sup.config(),
                    &sup.calendar(),
                    site,
                    when,
                    &body.to_string(),
                )?;
            }
            for (when, body) in &todo.complaints {
                complaints::apply_event(
                    tx,
                    &sup.config(),
                    &sup.calendar(),
                    A,
                    when,
                    &body.to_string(),
                )?;
            }
            store::cases::tick(tx, &sup, day)?;
            Ok(())
        })
        .unwrap();
        // The work order of M3's bad rating: called back 11-10 (due 11-10), found 属实, fixed 11-20
        // (due 11-14: late). C1 goes through every step and is archived upheld on 11-21.
        let act = |w: &mut Writer, a: ratings::WorkOrderAction| {
            w.run(|tx| {
                let id: i64 = tx.query_row("SELECT id FROM work_orders", [], |r| r.get(0))?;
                ratings::act(tx, id, &a, day).unwrap();
                Ok(())
            })
            .unwrap();
        };
        match key.as_str() {
            "2025-11-10" => {
                act(
                    &mut w,
                    ratings::WorkOrderAction::Callback {
                        by: "监察室".into(),
                        note: "已回访".into(),
                    },
                );
                act(
                    &mut w,
                    ratings::WorkOrderAction::Classify {
                        by: "监察室".into(),
                        classification: ratings::Classification::Upheld,
                        note: None,
                    },
                );
            }
            "2025-11-20" => act(
                &mut w,
                ratings::WorkOrderAction::Fix {
                    by: "民政办".into(),
                    note: "已整改".into(),
                },
            ),
            "2025-11-21" => {
                for (to, upheld) in [
                    (complaints::Step::Investigating, None),
                    (complaints::Step::Handling, None),
                    (complaints::Step::Feedback, None),
                    (complaints::Step::Archived, Some(true)),
                ] {
                    w.run(|tx| {
                        complaints::advance(
                            tx,
                            A,
                            "C1",
                            &complaints::Advance {
                                to,
                                by: "监察室".into(),
                                note: String::new(),
                                upheld,
                            },
                            day,
                        )
                        .unwrap();
                        Ok(())
                    })
                    .unwrap();
                }
            }
            _ => {}
        }
        day = day.succ_opt().unwrap();
    }
    assert!(days.is_empty(), "every fixture day was applied");

    // Attendance. Punches on each of November's 20 working days (four a day: 08:25, 12:01, 13:55,
    // 17:02 are all on time), with these exceptions:
    // - 0451: 11-13 in at 08:36 (late 6 min); 11-14 in at 09:05 (35 min late: half-day absent);
    //   11-20 out at 16:50 (left early 10 min); 11-24 事假 (no punches); 11-27 no evening punch,
    //   a make-up punch of 17:00 approved instead.
    // - 0452 (B role of W1): only 11-24, four punches (substitutes for 0451 both segments);
    //   病假 11-06 afternoon with a note.
    // - 0611: 11-13 morning only; out on registered business 13:30–17:30.
    // - 0612, 0701, L01: no punches at all; 0612 asks for a make-up punch (left pending).
    // - 0801: every day.
    let sup = sup_on(&cal, &config, d("2025-11-28"));
    let workdays: Vec<NaiveDate> = d("2025-11-01")
        .iter_days()
        .take_while(|x| *x <= d("2025-11-30"))
        .filter(|x| cal.is_workday(*x).unwrap())
        .collect();
    assert_eq!(workdays.len(), 20);
    w.run(|tx| {
        let punch = |staff: &str, day: NaiveDate, hm: &str| {
            let body = serde_json::json!({"staff_id": staff, "direction": "unspecified", "method": "card", "source": "zk"});
            att::apply_punch(tx, A, &at(&day.to_string(), hm), &body.to_string(), Some(0))
        };
        for day in &workdays {
            let ds = day.to_string();
            let normal = ["08:25", "12:01", "13:55", "17:02"];
            let mine: Vec<&str> = match ds.as_str() {
                "2025-11-13" => vec!["08:36", "12:01", "13:55", "17:02"],
                "2025-11-14" => vec!["09:05", "12:01", "13:55", "17:02"],
                "2025-11-20" => vec!["08:25", "12:01", "13:55", "16:50"],
                "2025-11-24" => vec![],
                "2025-11-27" => vec!["08:25", "12:01", "13:55"],
                _ => normal.to_vec(),
            };
            for hm in mine {
                punch("0451", *day, hm)?;
            }
            let forestry: &[&str] = if ds == "2025-11-13" { &normal[..2] } else { &normal };
            for hm in forestry {
                punch("0611", *day, hm)?;
            }
            for hm in normal {
                punch("0801", *day, hm)?;
            }
            if ds == "2025-11-24" {
                for hm in normal {
                    punch("0452", *day, hm)?;
                }
            }
        }
        for (staff, kind, leave, from, to, note) in [
            ("0451", "leave", Some("事假"), "2025-11-24", "2025-11-24", None),
            ("0452", "leave", Some("病假"), "2025-11-06 14:00", "2025-11-06 17:30", Some("医院证明")),
            ("0611", "out_of_office", None, "2025-11-13 13:30", "2025-11-13 17:30", None),
            ("0801", "leave", Some("年假"), "2025-12-01", "2025-12-02", None),
        ] {
            let body = serde_json::json!({"staff_id": staff, "type": kind, "leave_type": leave,
                "from": from, "to": to, "note_ref": note});
            att::apply_duty(tx, A, "2025-11-01T09:00:00+08:00", &body.to_string())?;
        }
        for (leader, unit, day) in [
            ("L01", "民政办", "2025-11-05"),
            ("L01", "民政办", "2025-11-19"),
            ("L03", "社保所", "2025-11-12"),
            ("L01", "民政办", "2025-12-03"),
        ] {
            let body = serde_json::json!({"leader_id": leader, "unit": unit, "findings": []});
            att::apply_patrol(tx, A, &at(day, "10:00"), &body.to_string())?;
        }
        att::apply_patrol(
            tx,
            B,
            &at("2025-11-06", "10:00"),
            &serde_json::json!({"leader_id": "B01", "unit": "民政办", "findings": []}).to_string(),
        )?;
        let today = d("2025-11-28");
        let req = |staff: &str, day: &str, time: &str| att::MakeupRequest {
            site: A.into(),
            staff_id: staff.into(),
            day: d(day),
            time: time.into(),
            reason: "忘记打卡".into(),
            by: staff.into(),
        };
        let m = att::request_makeup(tx, &sup.config(), &sup.calendar(), &req("0451", "2025-11-27", "17:00"), today).unwrap();
        att::decide_makeup(tx, m.id, &att::MakeupDecision { approve: true, by: "shangshi".into(), note: String::new() }, today)
            .unwrap();
        att::request_makeup(tx, &sup.config(), &sup.calendar(), &req("0612", "2025-11-28", "08:30"), today).unwrap();
        Ok(())
    })
    .unwrap();
    Fixture {
        _dir: dir,
        path,
        sup: sup_on(&cal, &config, d(TODAY)),
    }
}

fn unit<'a>(r: &'a Report, site: &str, name: &str) -> &'a UnitRow {
    r.units
        .iter()
        .find(|u| u.site == site && u.unit == name)
        .unwrap_or_else(|| {
            panic!(
                "no row for {site} {name}: {:?}",
                r.units
                    .iter()
                    .map(|u| (&u.site, &u.unit))
                    .collect::<Vec<_>>()
            )
        })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.006
}

/// (accepted, immediate, promised) accepted; (completed, immediate, promised) completed; on time, early.
fn intake(u: &UnitRow) -> [i64; 8] {
    [
        u.accepted,
        u.accepted_immediate,
        u.accepted_promised,
        u.completed,
        u.completed_immediate,
        u.completed_promised,
        u.on_time,
        u.early,
    ]
}

/// yellow lights, red lights, yellow cards, red cards, letters.
fn warnings(u: &UnitRow) -> [i64; 5] {
    [
        u.yellow_lights,
        u.red_lights,
        u.yellow_cards,
        u.red_cards,
        u.letters,
    ]
}

/// staff, on time, late, early, absent, leave, make-ups, vacant, substitutions, patrols.
fn attendance(u: &UnitRow) -> [i64; 10] {
    [
        u.staff,
        u.segments_on_time,
        u.late,
        u.left_early,
        u.absent,
        u.on_leave_segments,
        u.makeups,
        u.vacant_segments,
        u.substitutions,
        u.patrols,
    ]
}

/// ratings, satisfied, bad, work orders, called back on time, fixed on time, complaints, archived, upheld.
fn feedback(u: &UnitRow) -> [i64; 9] {
    [
        u.ratings,
        u.satisfied,
        u.bad_ratings,
        u.work_orders,
        u.called_back_on_time,
        u.fixed_on_time,
        u.complaints,
        u.complaints_archived,
        u.complaints_upheld,
    ]
}

#[test]
fn the_fixture_month_matches_the_hand_computed_figures() {
    let f = fixture();
    let month = Period::month("2025-11").unwrap();
    let r = f.report(
        ReportScope {
            site: Some(A.into()),
            unit: None,
        },
        &month,
    );
    assert_eq!(r.sites, [A]);

    // 1. 业务受理, per unit.
    // 民政办: accepted M1 M2 (immediate) M3 M4 M5 (promised); completed M1 M2 (imm.) M3 M4 M6
    // (prom.); on time M1 M2 M3 M6; early M3 M6.
    let mz = unit(&r, A, "民政办");
    assert_eq!(intake(mz), [5, 2, 3, 5, 2, 3, 4, 2]);
    assert_eq!((mz.on_time_rate, mz.early_rate), (Some(0.8), Some(0.4)));
    // 林业站: accepted F1 (prom.) F2 F3 (imm.); completed F2 F3; on time F2.
    let ly = unit(&r, A, "林业站");
    assert_eq!(intake(ly), [3, 2, 1, 2, 2, 0, 1, 0]);
    assert_eq!((ly.on_time_rate, ly.early_rate), (Some(0.5), Some(0.0)));
    let sb = unit(&r, A, "社保所");
    assert_eq!(intake(sb), [1, 0, 1, 1, 0, 1, 1, 1]);
    let cz = unit(&r, A, "财政所");
    assert_eq!(intake(cz), [0; 8]);
    // The township: 9 accepted (4 immediate, 5 promised), 8 completed (4 + 4), 6 on time, 3 early.
    assert_eq!(intake(&r.total), [9, 4, 5, 8, 4, 4, 6, 3]);
    assert_eq!(
        (r.total.on_time_rate, r.total.early_rate),
        (Some(0.75), Some(0.375))
    );
    let top: Vec<(&str, i64)> = r
        .top_units
        .iter()
        .map(|u| (u.unit.as_str(), u.count))
        .collect();
    assert_eq!(top, [("民政办", 5), ("林业站", 3), ("社保所", 1)]);
    let zero: Vec<&str> = r.zero_case_units.iter().map(|u| u.unit.as_str()).collect();
    assert_eq!(zero, ["财政所"]);

    // 2. Warnings raised in November (M5's lights come in December; blue is not counted).
    // 民政办: M1, M2 red lights on acceptance; M4 yellow light, red light, yellow card.
    assert_eq!(warnings(mz), [1, 3, 1, 0, 0]);
    // 林业站: F1 every rung to the letter; F2, F3 red lights on acceptance.
    assert_eq!(warnings(ly), [1, 3, 1, 1, 1]);
    assert_eq!(warnings(sb), [0; 5]);
    assert_eq!(warnings(&r.total), [2, 6, 2, 1, 1]);
    // The trend: six months to November; October has M0 (on time, early), November 8 completions.
    let labels: Vec<&str> = r.trend.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "2025-06", "2025-07", "2025-08", "2025-09", "2025-10", "2025-11"
        ]
    );
    assert_eq!(
        (r.trend[4].completed, r.trend[4].on_time_rate),
        (1, Some(1.0))
    );
    assert_eq!(
        (r.trend[5].completed, r.trend[5].on_time, r.trend[5].early),
        (8, 6, 3)
    );
    assert_eq!(r.trend[0].on_time_rate, None);

    // 3. Attendance: 20 working days, two segments each = 40 segments a clerk.
    // 民政办: 0451 on time 35, late 1 (11-13), absent 1 (11-14), early 1 (11-20), leave 2 (11-24),
    // make-up 1; 0452 on time 2 (11-24), leave 1 (11-06 pm), absent 37. W1 vacant only 11-14 am;
    // substituted by B twice on 11-24. Patrols 11-05 and 11-19.
    assert_eq!(attendance(mz), [2, 37, 1, 1, 38, 3, 1, 1, 2, 2]);
    // 林业站: 0611 on time 39, out 1 (11-13 pm); 0612 absent 40; W2 vacant 11-13 pm.
    assert_eq!(attendance(ly), [2, 39, 0, 0, 40, 1, 0, 1, 0, 0]);
    // 财政所: nobody ever came: 40 absent, 40 vacant.
    assert_eq!(attendance(cz), [1, 0, 0, 0, 40, 0, 0, 40, 0, 0]);
    assert_eq!(attendance(sb), [1, 40, 0, 0, 0, 0, 0, 0, 0, 1]);
    let a = &r.attendance;
    assert_eq!(
        (
            a.late,
            a.left_early,
            a.absent,
            a.vacant_segments,
            a.substitutions,
            a.makeups,
            a.makeups_pending
        ),
        (1, 1, 118, 42, 2, 1, 1)
    );
    // Leave: 事假 one day (11-24), 病假 half a day (11-06 pm); 年假 is in December. One
    // out-of-office registration.
    let leave: Vec<(&str, i64, f64)> = a
        .leave
        .iter()
        .map(|k| (k.leave_type.as_str(), k.person_times, k.days))
        .collect();
    assert_eq!(leave, [("事假", 1, 1.0), ("病假", 1, 0.5)]);
    assert_eq!(
        (a.leave_person_times, a.leave_days, a.out_of_office),
        (2, 1.5, 1)
    );
    assert_eq!(a.judged_to, Some(d("2025-11-30")));

    // 4. Patrols: 民政办 2, 社保所 1 (the December one does not count); none at 林业站, 财政所.
    assert_eq!(r.total.patrols, 3);
    let without: Vec<&str> = r
        .units_without_patrol
        .iter()
        .map(|u| u.unit.as_str())
        .collect();
    assert_eq!(without, ["林业站", "财政所"]);

    // 5. Ratings: 民政办 M1 5, M2 4, M3 2 (its second rating not counted), M6 and M4 defaulted to 3
    // (11-10, 11-24): 5 ratings, 4 satisfied, 1 bad, one work order called back on time and fixed
    // late. 林业站: F2 3 (F3's default falls on 12-01). 社保所: S1 5.
    assert_eq!(feedback(mz), [5, 4, 1, 1, 1, 0, 1, 0, 0]);
    assert_eq!(feedback(ly), [1, 1, 0, 0, 0, 0, 1, 1, 1]);
    assert_eq!(feedback(sb), [1, 1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(feedback(&r.total), [7, 6, 1, 1, 1, 0, 2, 1, 1]);
    assert_eq!(r.total.satisfaction_rate, Some(0.8571));
    let c = &r.complaints;
    assert_eq!(
        (c.received, c.archived, c.upheld, c.not_upheld, c.open),
        (2, 1, 1, 0, 1)
    );

    // 6. Awards, out of 80: 社保所 30·1 + 30·1 + 20·1 = 80; 民政办 30·0.8 + 30·(37/77) + 20·0.8 ≈
    // 54.42, disqualified by M3's 不满意 and M4's yellow card; 林业站 30·0.5 + 30·(39/79) + 20·1 ≈
    // 49.81, disqualified by C1 and F1's cards. 财政所 completed nothing: not ranked.
    let ranked: Vec<(&str, f64, Vec<&str>)> = r
        .awards
        .units_ranked
        .iter()
        .map(|c| (c.unit.as_str(), c.score, c.disqualified.clone()))
        .collect();
    assert_eq!(ranked.len(), 3, "{ranked:?}");
    assert_eq!((ranked[0].0, ranked[0].1), ("社保所", 80.0));
    assert!(ranked[0].2.is_empty());
    assert_eq!(ranked[1].0, "民政办");
    assert!(
        close(ranked[1].1, 24.0 + 30.0 * 37.0 / 77.0 + 16.0),
        "{ranked:?}"
    );
    assert_eq!(ranked[1].2, ["card", "bad_rating"]);
    assert_eq!(ranked[2].0, "林业站");
    assert!(
        close(ranked[2].1, 15.0 + 30.0 * 39.0 / 79.0 + 20.0),
        "{ranked:?}"
    );
    assert_eq!(ranked[2].2, ["upheld_complaint", "card"]);
    let flags: Vec<&str> = r
        .awards
        .red_flag_units
        .iter()
        .map(|c| c.unit.as_str())
        .collect();
    assert_eq!(flags, ["社保所"]);
    // Clerks: 0801 80; 0451 30·0.8 + 30·35/38 + 20·0.8 ≈ 67.63 but disqualified (bad rating, card);
    // 0611 30·0.5 + 30·1 + 20·1 = 65 but disqualified (C1 names him, F1's cards); the others have
    // too few points (0452: 30·2/39 ≈ 1.54).
    let staff: BTreeMap<&str, (f64, Vec<&str>)> = r
        .awards
        .staff_ranked
        .iter()
        .map(|c| {
            (
                c.staff_id.as_deref().unwrap(),
                (c.score, c.disqualified.clone()),
            )
        })
        .collect();
    assert_eq!(staff["0801"], (80.0, vec![]));
    assert!(
        close(staff["0451"].0, 24.0 + 30.0 * 35.0 / 38.0 + 16.0),
        "{staff:?}"
    );
    assert_eq!(staff["0451"].1, ["card", "bad_rating"]);
    assert_eq!(staff["0611"], (65.0, vec!["upheld_complaint", "card"]));
    assert!(close(staff["0452"].0, 30.0 * 2.0 / 39.0), "{staff:?}");
    assert_eq!((staff["0612"].0, staff["0701"].0), (0.0, 0.0));
    let models: Vec<&str> = r
        .awards
        .service_models
        .iter()
        .map(|c| c.staff_id.as_deref().unwrap())
        .collect();
    assert_eq!(models, ["0801"]);

    // 7. Problems, from the figures.
    let codes: Vec<&str> = r.problems.iter().map(|p| p.code).collect();
    assert_eq!(
        codes,
        [
            "ab_gaps",
            "missing_patrols",
            "discipline",
            "overdue",
            "complaints"
        ]
    );
    assert!(
        r.problems[0]
            .zh
            .contains("3 个窗口单位共出现 42 个空岗时段"),
        "{}",
        r.problems[0].zh
    );
    assert!(
        r.problems[1].zh.contains("林业站、财政所"),
        "{}",
        r.problems[1].zh
    );
    assert!(
        r.problems[2]
            .zh
            .contains("迟到 1 次、早退 1 次、旷工 118 个半天"),
        "{}",
        r.problems[2].zh
    );
    assert!(
        r.problems[3]
            .zh
            .contains("黄牌 2 张、红牌 1 张、监察建议书 1 份"),
        "{}",
        r.problems[3].zh
    );
    assert!(
        r.problems[4].zh.contains("投诉属实 1 件"),
        "{}",
        r.problems[4].zh
    );
    // What the store does not hold is said, not made up.
    assert!(r.missing.iter().any(|m| m.zh.contains("咨询")));
    assert!(r.missing.iter().any(|m| m.zh.contains("领导综合评分")));
}

#[test]
fn the_weekly_summary_a_unit_and_the_county_use_the_same_figures() {
    let f = fixture();
    // Week 47 (11-17 … 11-23): accepted F2, F3; completed M4 (late), F2 (on time); ratings F2 only
    // (M4's default falls on 11-24).
    let week = Period::week("2025-W47").unwrap();
    assert_eq!((week.from, week.to), (d("2025-11-17"), d("2025-11-23")));
    let r = f.report(
        ReportScope {
            site: Some(A.into()),
            unit: None,
        },
        &week,
    );
    assert_eq!(intake(&r.total), [2, 2, 0, 2, 1, 1, 1, 0]);
    assert_eq!(r.total.ratings, 1);
    // Five working days: 0451 left early on 11-20 (1), on time 9; 0452, 0612, 0701 absent 10
    // each; 0611, 0801 on time 10 each. W3 vacant 10 segments.
    assert_eq!(
        (
            r.total.segments_on_time,
            r.total.left_early,
            r.total.absent,
            r.total.vacant_segments
        ),
        (29, 1, 30, 10)
    );
    // The patrol of 11-19 (民政办).
    assert_eq!(r.total.patrols, 1);
    assert_eq!(r.trend.len(), report::TREND_WEEKS);
    assert_eq!(r.trend.last().unwrap().label, "2025-W47");

    // A unit chief's scope: only 民政办.
    let r = f.report(
        ReportScope {
            site: Some(A.into()),
            unit: Some("民政办".into()),
        },
        &Period::month("2025-11").unwrap(),
    );
    assert!(r.units.iter().all(|u| u.unit == "民政办"), "{:?}", r.units);
    assert_eq!(intake(&r.total), [5, 2, 3, 5, 2, 3, 4, 2]);
    assert_eq!(
        r.attendance.leave_person_times, 2,
        "0451's 事假 and 0452's 病假"
    );
    assert_eq!(r.attendance.out_of_office, 0);

    // The county: both townships; B adds B1 (accepted and completed on time) and its default
    // rating, and L01's 40 absent segments.
    let r = f.report(ReportScope::default(), &Period::month("2025-11").unwrap());
    assert_eq!(r.sites, [B, A]);
    assert_eq!(intake(&r.total), [10, 5, 5, 9, 5, 4, 7, 3]);
    assert_eq!(r.total.ratings, 8);
    assert_eq!(r.total.absent, 158);
    let b = unit(&r, B, "民政办");
    assert_eq!((b.accepted, b.patrols, b.vacant_segments), (1, 1, 40));
    // Township A's own figures are the same inside the county report.
    assert_eq!(intake(unit(&r, A, "民政办")), [5, 2, 3, 5, 2, 3, 4, 2]);
}

#[test]
fn the_exports_carry_the_figures() {
    use calamine::{Data, Reader as _, Xlsx};
    let f = fixture();
    let r = f.report(
        ReportScope {
            site: Some(A.into()),
            unit: None,
        },
        &Period::month("2025-11").unwrap(),
    );

    let bytes = export::xlsx(&r, Lang::Zh).unwrap();
    let mut book = Xlsx::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(
        book.sheet_names(),
        ["概况", "按单位", "时限趋势", "量化评比", "存在问题"]
    );
    let units = book.worksheet_range("按单位").unwrap();
    let header: Vec<String> = units
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(header.len(), export::COLUMNS.len());
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let row_of = |unit: &str| {
        units
            .rows()
            .find(|r| r.get(1).map(|c| c.to_string()).as_deref() == Some(unit))
            .unwrap_or_else(|| panic!("no row {unit}"))
            .to_vec()
    };
    let mz = row_of("民政办");
    assert_eq!(mz[col("受理")], Data::Float(5.0));
    assert_eq!(mz[col("办结·即办件")], Data::Float(2.0));
    assert_eq!(mz[col("按时办结率")], Data::Float(0.8));
    assert_eq!(mz[col("黄牌")], Data::Float(1.0));
    assert_eq!(mz[col("旷工（半天）")], Data::Float(38.0));
    assert_eq!(mz[col("空岗时段")], Data::Float(1.0));
    let ly = row_of("林业站");
    assert_eq!(ly[col("监察建议书")], Data::Float(1.0));
    assert_eq!(ly[col("投诉属实")], Data::Float(1.0));
    let total = units
        .rows()
        .find(|r| r.first().map(|c| c.to_string()).as_deref() == Some("合计"))
        .unwrap()
        .to_vec();
    assert_eq!(total[col("受理")], Data::Float(9.0));
    assert_eq!(total[col("办结")], Data::Float(8.0));
    assert_eq!(total[col("按时办结率")], Data::Float(0.75));
    let summary = book.worksheet_range("概况").unwrap();
    let cells: Vec<String> = summary
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect();
    assert!(
        cells.iter().any(|c| c.contains("2025-11 窗口工作情况通报")),
        "{cells:?}"
    );
    assert!(cells.contains(&"外出办事登记".to_owned()));
    assert!(cells.contains(&"财政所".to_owned()) || cells.iter().any(|c| c.ends_with("财政所")));
    let awards = book.worksheet_range("量化评比").unwrap();
    let cells: Vec<String> = awards
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect();
    assert!(
        cells.contains(&"社保所".to_owned()) && cells.contains(&"投诉属实、黄牌/红牌".to_owned()),
        "{cells:?}"
    );

    let csv = export::csv(&r, Lang::Zh);
    assert!(
        csv.starts_with("\u{feff}".as_bytes()),
        "a byte-order mark for Excel"
    );
    let text = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    let header: Vec<&str> = lines[2].split(',').collect();
    assert_eq!(header.len(), export::COLUMNS.len());
    let line = lines
        .iter()
        .find(|l| l.starts_with(&format!("{A},民政办,")))
        .unwrap();
    let cells: Vec<&str> = line.split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!(
        (
            cells[at("受理")],
            cells[at("按时办结率")],
            cells[at("黄牌")]
        ),
        ("5", "80.00%", "1")
    );
    let total = lines.last().unwrap();
    assert!(
        total.starts_with("合计,,9,4,5,8,4,4,6,3,75.00%,37.50%"),
        "{total}"
    );
}

/// The running hub's report (`compute_live`) sums stored summaries of the townships' attendance.
/// After every kind of write they are judged from, and after a calendar change, it still equals
/// the report judged from scratch; a township nothing was written for is not judged again.
#[test]
fn stored_summaries_follow_every_write_and_setting() {
    let f = fixture();
    let month = Period::month("2025-11").unwrap();
    let county = ReportScope::default();
    let mut w = Writer::open(&f.path).unwrap();
    let sums = f.sup.summaries();
    let mut last = serde_json::Value::Null;
    let mut check = |what: &str, judged_again: u64| {
        let before = sums.judged();
        let live = f
            .reader()
            .run(|c| report::compute_live(c, &f.sup, &county, &month, d(TODAY)))
            .unwrap();
        let live = serde_json::to_value(&live).unwrap();
        let fresh = serde_json::to_value(f.report(county.clone(), &month)).unwrap();
        assert_eq!(live, fresh, "after {what}");
        assert_eq!(
            sums.judged() - before,
            judged_again,
            "sites judged after {what}"
        );
        if !last.is_null() {
            assert_ne!(
                live == last,
                judged_again > 0,
                "the figures changed after {what}"
            );
        }
        last = live;
    };
    check("the fixture", 2);
    check("nothing", 0);

    let punch = |w: &mut Writer, day: &str, hm: &str| {
        w.run(|tx| {
            let body = serde_json::json!({"staff_id": "0612", "direction": "unspecified", "method": "card", "source": "zk"});
            att::apply_punch(tx, A, &at(day, hm), &body.to_string(), Some(0))
        })
        .unwrap();
    };
    // 0612 has no punches: a morning of 11-18 turns two absent half-days into one.
    punch(&mut w, "2025-11-18", "08:25");
    punch(&mut w, "2025-11-18", "12:01");
    check("two punches at A", 1);
    // December is another month: November's summaries stay.
    punch(&mut w, "2025-12-01", "08:25");
    check("a punch of December", 0);

    w.run(|tx| {
        let body = serde_json::json!({"staff_id": "0701", "type": "leave", "leave_type": "事假",
            "from": "2025-11-19", "to": "2025-11-19", "note_ref": null});
        att::apply_duty(tx, A, "2025-11-18T09:00:00+08:00", &body.to_string())
    })
    .unwrap();
    check("a day of leave", 1);

    w.run(|tx| {
        let body = serde_json::json!({"leader_id": "B01", "unit": "民政办", "findings": []});
        att::apply_patrol(tx, B, &at("2025-11-20", "10:00"), &body.to_string())
    })
    .unwrap();
    check("a patrol at B", 1);

    let decide = |w: &mut Writer| {
        w.run(|tx| {
            let pending: i64 = tx.query_row(
                "SELECT id FROM makeups WHERE staff_id = '0612' AND status = 'pending'",
                [],
                |r| r.get(0),
            )?;
            let yes = att::MakeupDecision {
                approve: true,
                by: "shangshi".into(),
                note: String::new(),
            };
            att::decide_makeup(tx, pending, &yes, d("2025-11-28")).unwrap();
            Ok(())
        })
        .unwrap();
    };
    decide(&mut w);
    check("an approved make-up punch", 1);

    w.run(|tx| {
        let v = att::ViolationInput {
            site: A.into(),
            staff_id: "0611".into(),
            day: d("2025-11-21"),
            what: "擅离岗位".into(),
            by: "jiancha".into(),
            months: Some(2),
        };
        att::record_violation(tx, &HubConfig::default(), &v).unwrap();
        Ok(())
    })
    .unwrap();
    check("a violation", 1);

    w.run(|tx| {
        let newcomer = att::StaffEntry {
            site: B.into(),
            staff_id: "B09".into(),
            name: "孙新".into(),
            unit: "财政所".into(),
            window: "W9".into(),
            role: "A".into(),
            pin: None,
            card_no: None,
        };
        att::upsert_staff(tx, &[newcomer]).unwrap();
        Ok(())
    })
    .unwrap();
    check("a new clerk at B", 1);

    // The same roster again (as a re-import does) changes nothing judged.
    w.run(|tx| {
        att::upsert_staff(tx, &att::parse_roster(ROSTER).unwrap()).unwrap();
        Ok(())
    })
    .unwrap();
    check("the same roster again", 0);

    let mut cal = (*f.sup.calendar()).clone();
    cal.set_override(d("2025-11-21"), false);
    f.sup.set_calendar(cal);
    check("11-21 made a day off", 2);
}

fn contact(role: Role, name: &str, to: &str, site: Option<&str>) -> Contact {
    Contact {
        role,
        name: name.into(),
        to: to.into(),
        site: site.map(String::from),
        unit: None,
        staff_id: None,
    }
}

/// The report by message (OVERSIGHT.md §5: SMS digests to leaders use the report's figures): the
/// month's figures go to each leadership contact from the 1st of the next month, once, for the
/// contact's township or the county; the week's on Monday when asked for; a late report is not sent.
#[test]
fn leaders_get_the_report_figures_by_message_once() {
    let f = fixture();
    let mut config = (*f.sup.config()).clone();
    config.contacts = vec![
        contact(Role::Leadership, "分管副县长", "13800000004", None),
        contact(Role::Leadership, "上石镇镇长", "13800000005", Some(A)),
        contact(Role::Supervisor, "县电子监察室", "13800000003", None),
    ];
    f.sup.set_config(config.clone()).unwrap();
    let w = Writer::open(&f.path).unwrap();
    let queue =
        |day: &str| notify::queue_reports(w.conn(), &f.sup, &HubClock::fixed(d(day))).unwrap();
    assert_eq!(queue("2025-11-30"), 0, "November is not over");
    assert_eq!(queue("2025-12-01"), 2, "one message per leader");
    assert_eq!(queue("2025-12-01"), 0, "once");
    assert_eq!(queue("2025-12-05"), 0, "once");
    assert_eq!(queue("2026-01-08"), 0, "December's is a week late");
    let messages = |like: &str| -> Vec<(String, String, String)> {
        w.conn()
            .prepare("SELECT key, subject, text FROM notifications WHERE key LIKE ?1 ORDER BY key")
            .unwrap()
            .query_map([like], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let sent = messages("report:%");
    let keys: Vec<&str> = sent.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "report:2025-11:leadership:13800000004",
            "report:2025-11:leadership:13800000005"
        ]
    );
    // The hand-computed figures of the fixture month (the_fixture_month_matches_…): the county …
    assert_eq!(sent[0].1, "全县2025年11月窗口工作月报");
    assert!(
        sent[0].2.contains("受理10件（即办5、承诺5），办结9件")
            && sent[0].2.contains("旷工158个半天"),
        "{}",
        sent[0].2
    );
    // … and township A's.
    assert_eq!(sent[1].1, format!("{A}2025年11月窗口工作月报"));
    assert!(
        sent[1].2.contains(
            "受理9件（即办4、承诺5），办结8件，按时办结率75.0%；黄灯2、红灯6、黄牌2、红牌1、督办函1；迟到1、早退1、旷工118个半天、空岗42段"
        ),
        "{}",
        sent[1].2
    );

    // The weekly summary when asked for: Monday to Wednesday after the week.
    config.notify.digest.report_weekly = true;
    f.sup.set_config(config).unwrap();
    assert_eq!(queue("2025-11-20"), 0, "Thursday: week 46 is late");
    assert_eq!(queue("2025-11-24"), 2, "Monday: week 47");
    let weekly = messages("report:2025-W47:%");
    assert_eq!(weekly.len(), 2);
    assert_eq!(weekly[0].1, "全县2025年第47周（11-17至11-23）窗口工作周报");
    assert!(weekly[1].2.contains("受理2件"), "{}", weekly[1].2);
}

/// A store made before the report's columns (cases' kind and handler, warnings' unit and handler)
/// gains them when opened, filled in from the cases, and gives the same report.
#[test]
fn an_older_store_gains_the_report_columns_and_gives_the_same_report() {
    let f = fixture();
    let month = Period::month("2025-11").unwrap();
    let before = serde_json::to_value(f.report(ReportScope::default(), &month)).unwrap();
    {
        let c = rusqlite::Connection::open(&f.path).unwrap();
        c.execute_batch(
            "DROP INDEX cases_by_accepted; DROP INDEX cases_by_completed;
             ALTER TABLE cases DROP COLUMN kind; ALTER TABLE cases DROP COLUMN staff_id;
             ALTER TABLE case_warnings DROP COLUMN unit; ALTER TABLE case_warnings DROP COLUMN staff_id;",
        )
        .unwrap();
    }
    drop(Writer::open(&f.path).unwrap());
    let c = rusqlite::Connection::open(&f.path).unwrap();
    let unfilled: i64 = c
        .query_row(
            "SELECT (SELECT count(*) FROM cases WHERE kind IS NULL OR staff_id IS NULL)
                  + (SELECT count(*) FROM case_warnings WHERE unit IS NULL OR staff_id IS NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unfilled, 0);
    let warnings: i64 = c
        .query_row("SELECT count(*) FROM case_warnings", [], |r| r.get(0))
        .unwrap();
    assert!(
        warnings > 10,
        "the fixture's warnings are there: {warnings}"
    );
    // Warnings are append-only again.
    assert!(
        c.execute("UPDATE case_warnings SET level = 'blue'", [])
            .is_err()
    );
    let after = serde_json::to_value(f.report(ReportScope::default(), &month)).unwrap();
    assert_eq!(before, after);
}
