//! A case as its stage events tell it: the bridge from `case` events to the deadline engine.
//!
//! Pure: [`CaseState::apply`] folds one stage event (in event-time order) into the case, keeping
//! the dates the deadline engine needs ([`CaseState::clock`]) and the process anomalies seed 004 asks
//! to flag (不按程序: a stage out of order or skipped; a rejection without a reason). Anomalies are
//! recorded, never refused: the event is a fact that happened.

use super::calendar::DayUnit;
use super::deadlines::{CaseClock, Pause};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A `case` event body (PROTOCOL.md), as the protocol crate reads it.
pub use sunlight_protocol::event::bodies::{Case as StageEvent, CaseKind as Kind, Stage};

/// Position of the five monitored stages (受理 承办 审核 批准 办结); others have none.
fn step(stage: Stage) -> Option<u8> {
    match stage {
        Stage::Accepted => Some(1),
        Stage::Undertaken => Some(2),
        Stage::Reviewed => Some(3),
        Stage::Approved => Some(4),
        Stage::Completed => Some(5),
        _ => None,
    }
}

/// A process anomaly to show supervisors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub on: NaiveDate,
    pub what: String,
}

/// What is known about one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseState {
    pub case_no: String,
    pub item_code: String,
    pub item_name: String,
    pub unit: String,
    pub window: String,
    pub staff_id: String,
    pub kind: Kind,
    pub limit_days: u32,
    pub unit_of_days: DayUnit,
    pub accepted: Option<NaiveDate>,
    pub pauses: Vec<(NaiveDate, Option<NaiveDate>)>,
    pub extension_days: u32,
    pub completed: Option<NaiveDate>,
    /// Rejected (不予受理) or withdrawn: closed without completion.
    pub closed: Option<(Stage, NaiveDate)>,
    /// The highest monitored stage reached so far.
    pub last_step: u8,
    pub anomalies: Vec<Anomaly>,
    /// Fees charged over the case's stages, in fen (分).
    #[serde(default)]
    pub fee_fen: u64,
    /// The reason of the pause in progress, if any.
    #[serde(default)]
    pub pause_reason: Option<String>,
}

impl CaseState {
    /// A case first seen through `e`.
    pub fn new(e: &StageEvent) -> CaseState {
        CaseState {
            case_no: e.case_no.clone(),
            item_code: e.item_code.clone(),
            item_name: e.item_name.clone(),
            unit: e.unit.clone(),
            window: e.window.clone(),
            staff_id: e.staff_id.clone(),
            kind: e.kind,
            limit_days: e.limit_days.unwrap_or(0),
            unit_of_days: e.limit_unit.unwrap_or_default(),
            accepted: None,
            pauses: Vec::new(),
            extension_days: 0,
            completed: None,
            closed: None,
            last_step: 0,
            anomalies: Vec::new(),
            fee_fen: 0,
            pause_reason: None,
        }
    }

    fn flag(&mut self, on: NaiveDate, what: String) {
        self.anomalies.push(Anomaly { on, what });
    }

    /// Folds one stage event, dated `on` (the event's own time, not its arrival), into the case.
    pub fn apply(&mut self, e: &StageEvent, on: NaiveDate) {
        self.staff_id = e.staff_id.clone();
        if let Some(yuan) = e.fee_yuan.filter(|f| f.is_finite() && *f > 0.0) {
            self.fee_fen = self.fee_fen.saturating_add((yuan * 100.0).round() as u64);
        }
        if let Some(step) = step(e.stage) {
            if step <= self.last_step {
                self.flag(
                    on,
                    format!(
                        "stage {:?} after a later or equal stage (不按程序)",
                        e.stage
                    ),
                );
            } else if step > self.last_step + 1 && self.last_step > 0 {
                self.flag(on, format!("stage {:?} skips a stage (不按程序)", e.stage));
            } else if self.last_step == 0 && step > 1 {
                self.flag(
                    on,
                    format!(
                        "stage {:?} without acceptance (受理) first (不按程序)",
                        e.stage
                    ),
                );
            }
            self.last_step = self.last_step.max(step);
        }
        match e.stage {
            Stage::Received | Stage::Undertaken | Stage::Reviewed | Stage::Approved => {}
            Stage::Accepted => {
                if self.accepted.is_none() {
                    self.accepted = Some(on);
                    self.kind = e.kind;
                    self.limit_days = e.limit_days.unwrap_or(self.limit_days);
                }
            }
            Stage::Completed => {
                self.completed.get_or_insert(on);
                self.close_pause(on);
            }
            Stage::Rejected => {
                if e.reason
                    .as_deref()
                    .or(e.pause_reason.as_deref())
                    .unwrap_or("")
                    .trim()
                    .is_empty()
                {
                    self.flag(on, "rejected without a reason (不予受理未说明理由)".into());
                }
                self.closed.get_or_insert((Stage::Rejected, on));
            }
            Stage::Withdrawn => {
                self.closed.get_or_insert((Stage::Withdrawn, on));
            }
            Stage::Paused => {
                if self.pauses.last().is_some_and(|p| p.1.is_none()) {
                    self.flag(on, "paused while already paused".into());
                } else {
                    self.pauses.push((on, None));
                    self.pause_reason = e.pause_reason.clone();
                }
            }
            Stage::Resumed => {
                if !self.close_pause(on) {
                    self.flag(on, "resumed without a pause".into());
                }
            }
            Stage::Extended => {
                if e.approval_ref.as_deref().unwrap_or("").trim().is_empty() {
                    self.flag(
                        on,
                        "extension without an approval reference (延期未经批准)".into(),
                    );
                } else {
                    self.extension_days += e.extension_days.unwrap_or(10);
                }
            }
        }
    }

    fn close_pause(&mut self, on: NaiveDate) -> bool {
        match self.pauses.last_mut() {
            Some(p) if p.1.is_none() => {
                p.1 = Some(on);
                self.pause_reason = None;
                true
            }
            _ => false,
        }
    }

    /// The deadline engine's view, once the case is accepted; `None` before acceptance and once it
    /// was rejected or withdrawn.
    pub fn clock(&self) -> Option<CaseClock> {
        if self.closed.is_some() {
            return None;
        }
        Some(CaseClock {
            kind: self.kind,
            accepted: self.accepted?,
            limit_days: self.limit_days,
            unit: self.unit_of_days,
            pauses: self
                .pauses
                .iter()
                .map(|&(from, until)| Pause { from, until })
                .collect(),
            extension_days: self.extension_days,
            completed: self.completed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oversight::calendar::Calendar;
    use crate::oversight::deadlines::WarningLevel;
    use serde_json::json;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn ev(stage: &str, extra: serde_json::Value) -> StageEvent {
        let mut body = json!({"case_no": "C-417", "item_code": "MZ-001", "item_name": "老年优待证", "unit": "民政办",
            "window": "W1", "stage": stage, "staff_id": "0451", "kind": "promised", "limit_days": 5, "limit_unit": "working"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        serde_json::from_value(body).unwrap()
    }

    fn run(steps: &[(&str, &str, serde_json::Value)]) -> CaseState {
        let first = ev(steps[0].0, steps[0].2.clone());
        let mut case = CaseState::new(&first);
        for (stage, on, extra) in steps {
            case.apply(&ev(stage, extra.clone()), d(on));
        }
        case
    }

    #[test]
    fn the_five_stages_in_order_raise_no_anomaly_and_complete_on_time() {
        let case = run(&[
            ("accepted", "2025-11-03", json!({})),
            ("undertaken", "2025-11-04", json!({})),
            ("reviewed", "2025-11-05", json!({})),
            ("approved", "2025-11-06", json!({})),
            ("completed", "2025-11-07", json!({})),
        ]);
        assert!(case.anomalies.is_empty(), "{:?}", case.anomalies);
        let done = case
            .clock()
            .unwrap()
            .completion(&Calendar::official().unwrap())
            .unwrap()
            .unwrap();
        assert!(done.on_time && done.early);
    }

    #[test]
    fn skipped_and_out_of_order_stages_are_flagged() {
        let case = run(&[
            ("accepted", "2025-11-03", json!({})),
            ("approved", "2025-11-04", json!({})),
            ("reviewed", "2025-11-05", json!({})),
        ]);
        let what: Vec<&str> = case.anomalies.iter().map(|a| a.what.as_str()).collect();
        assert!(what[0].contains("skips"), "{what:?}");
        assert!(what[1].contains("after a later"), "{what:?}");
    }

    #[test]
    fn pauses_and_approved_extensions_move_the_due_day() {
        let cal = Calendar::official().unwrap();
        let case = run(&[
            ("accepted", "2025-11-03", json!({})),
            ("paused", "2025-11-05", json!({"pause_reason": "补正材料"})),
            ("resumed", "2025-11-10", json!({})),
            (
                "extended",
                "2025-11-11",
                json!({"extension_days": 10, "approval_ref": "民政办〔2025〕12号"}),
            ),
            ("extended", "2025-11-12", json!({"extension_days": 10})),
        ]);
        let clock = case.clock().unwrap();
        // 5 + 10 approved working days after Mon 11-03, not counting the paused Wed 11-05 to Fri
        // 11-07: 11-04, then 11-10 … 11-27. The unapproved extension is flagged, not applied.
        assert_eq!(clock.extension_days, 10);
        assert_eq!(clock.due(&cal).unwrap(), Some(d("2025-11-27")));
        assert!(
            case.anomalies
                .iter()
                .any(|a| a.what.contains("approval reference"))
        );
        assert_eq!(
            clock.level(&cal, d("2025-11-26")).unwrap(),
            Some(WarningLevel::YellowLight)
        );
    }

    #[test]
    fn a_rejection_without_reason_is_flagged_and_closes_the_case() {
        let case = run(&[
            ("received", "2025-11-03", json!({})),
            ("rejected", "2025-11-03", json!({})),
        ]);
        assert!(
            case.anomalies
                .iter()
                .any(|a| a.what.contains("without a reason"))
        );
        assert!(case.clock().is_none());
        let with_reason = run(&[("rejected", "2025-11-03", json!({"reason": "材料不全"}))]);
        assert!(with_reason.anomalies.is_empty());
    }
}
