//! Event kinds and their bodies (PROTOCOL.md, "Event kinds"), and an event's canonical bytes.
//!
//! An agent accepts an event as an [`EventDraft`]: the kind, the device's wall-clock time and a body
//! that passed the kind's schema. When the outbox gives it a `seq`, [`EventDraft::canonical`] renders
//! the exact bytes that are stored, hashed into the chain, sent, and re-hashed by the hub.
//! The body is kept as the JSON that was posted, so fields a newer schema adds are never dropped.

use crate::error::EventError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event kinds of protocol v1. Kinds from a newer agent are [`Kind::Other`]: the hub stores and
/// acknowledges them; an agent's intake refuses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// 考勤打卡: an attendance punch.
    Punch,
    /// 办件: a stage of a case (受理 → 承办 → 审核 → 批准 → 办结).
    Case,
    /// 好差评: a satisfaction rating.
    Rating,
    /// 投诉: a complaint.
    Complaint,
    /// 巡查签到: a leader's patrol sign-in.
    Patrol,
    /// 请假/外出登记: leave and out-of-office registration.
    Duty,
    Snapshot,
    Health,
    CmdResult,
    /// 更正: a correction that references an earlier event (events are never edited).
    Correction,
    Other(String),
}

impl Kind {
    pub const KNOWN: [&'static str; 10] = [
        "punch",
        "case",
        "rating",
        "complaint",
        "patrol",
        "duty",
        "snapshot",
        "health",
        "cmd_result",
        "correction",
    ];

    pub fn parse(name: &str) -> Kind {
        match name {
            "punch" => Kind::Punch,
            "case" => Kind::Case,
            "rating" => Kind::Rating,
            "complaint" => Kind::Complaint,
            "patrol" => Kind::Patrol,
            "duty" => Kind::Duty,
            "snapshot" => Kind::Snapshot,
            "health" => Kind::Health,
            "cmd_result" => Kind::CmdResult,
            "correction" => Kind::Correction,
            other => Kind::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Kind::Punch => "punch",
            Kind::Case => "case",
            Kind::Rating => "rating",
            Kind::Complaint => "complaint",
            Kind::Patrol => "patrol",
            Kind::Duty => "duty",
            Kind::Snapshot => "snapshot",
            Kind::Health => "health",
            Kind::CmdResult => "cmd_result",
            Kind::Correction => "correction",
            Kind::Other(name) => name,
        }
    }

    /// Checks `body` against this kind's schema. `Other` kinds pass: they belong to a newer schema.
    pub fn validate(&self, body: &Value) -> Result<(), EventError> {
        let result = match self {
            Kind::Punch => check::<bodies::Punch>(body),
            Kind::Case => check::<bodies::Case>(body).and_then(|()| bodies::Case::rules(body)),
            Kind::Rating => {
                check::<bodies::Rating>(body).and_then(|()| bodies::Rating::rules(body))
            }
            Kind::Complaint => check::<bodies::Complaint>(body),
            Kind::Patrol => check::<bodies::Patrol>(body),
            Kind::Duty => check::<bodies::Duty>(body),
            Kind::Snapshot => check::<bodies::Snapshot>(body),
            Kind::Health => check::<bodies::Health>(body),
            Kind::CmdResult => check::<bodies::CmdResult>(body),
            Kind::Correction => check::<bodies::Correction>(body),
            Kind::Other(_) => Ok(()),
        };
        result.map_err(|detail| EventError::InvalidBody {
            kind: self.as_str().to_owned(),
            detail,
        })
    }
}

fn check<T: serde::de::DeserializeOwned>(body: &Value) -> Result<(), String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    T::deserialize(body).map(|_| ()).map_err(|e| e.to_string())
}

/// Typed views of each body, used to validate; the stored body stays the JSON that was posted.
pub mod bodies {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Direction {
        In,
        Out,
        Unspecified,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum PunchMethod {
        Card,
        Pin,
        Fingerprint,
        Face,
        Kiosk,
        Terminal,
    }

    #[derive(Debug, Deserialize)]
    pub struct Punch {
        pub staff_id: String,
        pub direction: Direction,
        pub method: PunchMethod,
        pub source: String,
        pub photo: Option<String>,
        pub card_no: Option<String>,
        pub terminal_sn: Option<String>,
    }

    /// The five monitored stages and the events around them (seed 004).
    #[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum Stage {
        Received,
        /// 受理
        Accepted,
        /// 承办
        Undertaken,
        /// 审核
        Reviewed,
        /// 批准
        Approved,
        /// 办结
        Completed,
        Rejected,
        Paused,
        Resumed,
        Extended,
        Withdrawn,
    }

    #[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
    #[serde(rename_all = "snake_case")]
    pub enum CaseKind {
        /// 即办件: due the day it is accepted.
        Immediate,
        /// 承诺件: due after a promised number of days.
        Promised,
    }

    /// How a time limit counts days. Default: working days (Administrative Licensing Law, Art. 82).
    #[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
    #[serde(rename_all = "snake_case")]
    pub enum LimitUnit {
        #[default]
        Working,
        Natural,
    }

    #[derive(Debug, Clone, Deserialize)]
    pub struct Case {
        pub case_no: String,
        pub item_code: String,
        pub item_name: String,
        pub unit: String,
        pub window: String,
        pub stage: Stage,
        pub staff_id: String,
        pub kind: CaseKind,
        pub limit_days: Option<u32>,
        pub limit_unit: Option<LimitUnit>,
        pub applicant_name: Option<String>,
        pub applicant_phone: Option<String>,
        pub pause_reason: Option<String>,
        pub extension_days: Option<u32>,
        pub approval_ref: Option<String>,
        /// Why a case was rejected (不予受理 needs a reason, seed 004).
        pub reason: Option<String>,
        /// A fee charged at this stage, in yuan (a fee on a free item is 违规收费, seed 004).
        pub fee_yuan: Option<f64>,
    }

    impl Case {
        pub(super) fn rules(body: &Value) -> Result<(), String> {
            let case = Case::deserialize(body).map_err(|e| e.to_string())?;
            if case.kind == CaseKind::Promised && case.limit_days.unwrap_or(0) == 0 {
                return Err("a promised case (承诺件) needs limit_days of at least 1".into());
            }
            if case.fee_yuan.is_some_and(|f| !f.is_finite() || f < 0.0) {
                return Err("fee_yuan must be a non-negative number of yuan".into());
            }
            if case.stage == Stage::Paused && case.pause_reason.as_deref().unwrap_or("").is_empty()
            {
                return Err("a paused case needs a pause_reason".into());
            }
            if case.stage == Stage::Extended
                && case.approval_ref.as_deref().unwrap_or("").is_empty()
            {
                return Err("an extension needs the approval_ref of its approval".into());
            }
            Ok(())
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum RatingChannel {
        Pad,
        Sms,
        Web,
        Kiosk,
    }

    impl RatingChannel {
        pub fn as_str(self) -> &'static str {
            match self {
                RatingChannel::Pad => "pad",
                RatingChannel::Sms => "sms",
                RatingChannel::Web => "web",
                RatingChannel::Kiosk => "kiosk",
            }
        }
    }

    #[derive(Debug, Deserialize)]
    pub struct Rating {
        pub case_no: Option<String>,
        pub window: Option<String>,
        pub level: u8,
        pub channel: RatingChannel,
        pub staff_id: Option<String>,
        pub indicators: Option<serde_json::Map<String, Value>>,
        pub reason_codes: Option<Vec<String>>,
        pub comment: Option<String>,
    }

    impl Rating {
        pub(super) fn rules(body: &Value) -> Result<(), String> {
            let rating = Rating::deserialize(body).map_err(|e| e.to_string())?;
            if rating.case_no.is_none() && rating.window.is_none() {
                return Err("a rating needs case_no or window".into());
            }
            if rating
                .case_no
                .as_deref()
                .is_some_and(|c| c.trim().is_empty())
            {
                return Err("case_no is empty".into());
            }
            if !(1..=5).contains(&rating.level) {
                return Err(format!(
                    "level {} is out of range: 1 (非常不满意) to 5 (非常满意)",
                    rating.level
                ));
            }
            Ok(())
        }
    }

    #[derive(Debug, Deserialize)]
    pub struct Complaint {
        pub complaint_no: String,
        pub channel: String,
        pub about: Value,
        pub text: String,
        pub contact: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    pub struct Patrol {
        pub leader_id: String,
        pub unit: String,
        pub findings: Vec<Value>,
        pub photo: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum DutyType {
        Leave,
        OutOfOffice,
        Return,
    }

    #[derive(Debug, Deserialize)]
    pub struct Duty {
        pub staff_id: String,
        #[serde(rename = "type")]
        pub duty_type: DutyType,
        pub leave_type: Option<String>,
        pub from: String,
        pub to: String,
        pub note_ref: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum SnapshotTrigger {
        Schedule,
        Punch,
        Command,
        Event,
    }

    #[derive(Debug, Deserialize)]
    pub struct Snapshot {
        pub camera_id: String,
        pub sha256: String,
        pub bytes: u64,
        pub width: u32,
        pub height: u32,
        pub taken_at: String,
        pub trigger: SnapshotTrigger,
    }

    #[derive(Debug, Deserialize)]
    pub struct Health {
        pub cpu: f64,
        pub mem: u64,
        pub disk_free: u64,
        pub temp: Option<f64>,
        pub uptime: u64,
        pub backlog_events: u64,
        pub backlog_bytes: u64,
        pub clock_offset_ms: Option<i64>,
        pub version: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct CmdResult {
        pub cmd_id: String,
        pub ok: bool,
        pub detail: String,
    }

    #[derive(Debug, Deserialize)]
    pub struct Correction {
        pub corrects_seq: u64,
        pub reason: String,
        pub replacement: Value,
    }
}

/// Upper bound of one event's canonical bytes; larger things are blobs.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The mark of a back-dated event (issue 14, item 6): its `at` is earlier than the moment the box
/// received it by more than the box's bound for its kind. The event is recorded all the same; the
/// mark travels beside the body in the signed canonical bytes (`"backdated":{..}` after `body`,
/// absent when there is none, so events without it keep the bytes of protocol v1 and a hub from
/// before the mark ignores it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backdated {
    /// The event's own time, as posted (its `at`).
    pub at: String,
    /// When the box received it, by the box's clock.
    pub received_at: String,
    /// A ZKTeco terminal record: the terminal's previous upload, which the record is older than
    /// by more than the bound (terminal records keep their terminal time and are judged against
    /// the terminal's own uploads, not against when they happened to arrive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upload_at: Option<String>,
    /// The bound it is over, in seconds.
    pub bound_secs: u64,
}

impl Backdated {
    /// The mark for an event at `at` received at `received` (both RFC 3339), when `at` is earlier
    /// by more than `bound_secs`; `None` otherwise, or when either time does not parse.
    pub fn check(at: &str, received: &str, bound_secs: u64) -> Option<Backdated> {
        let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
        let r = chrono::DateTime::parse_from_rfc3339(received).ok()?;
        let early = r.signed_duration_since(t).num_seconds();
        (early > i64::try_from(bound_secs).unwrap_or(i64::MAX)).then(|| Backdated {
            at: at.to_owned(),
            received_at: received.to_owned(),
            last_upload_at: None,
            bound_secs,
        })
    }
}

/// A validated event waiting for its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    kind: Kind,
    at: String,
    body: String,
    backdated: Option<Backdated>,
}

impl EventDraft {
    /// Validates kind, time and body. Only the kinds of this protocol version are accepted here.
    pub fn new(kind: &str, at: &str, body: &Value) -> Result<EventDraft, EventError> {
        let kind = Kind::parse(kind);
        if let Kind::Other(name) = &kind {
            return Err(EventError::UnknownKind(name.chars().take(64).collect()));
        }
        chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|_| EventError::BadTime(at.chars().take(64).collect()))?;
        kind.validate(body)?;
        let body = serde_json::to_string(body).map_err(|e| EventError::Json(e.to_string()))?;
        if body.len() > MAX_EVENT_BYTES {
            return Err(EventError::InvalidBody {
                kind: kind.as_str().to_owned(),
                detail: format!(
                    "body of {} bytes exceeds {MAX_EVENT_BYTES}; send images as blobs",
                    body.len()
                ),
            });
        }
        Ok(EventDraft {
            kind,
            at: at.to_owned(),
            body,
            backdated: None,
        })
    }

    /// Marks this event back-dated (see [`Backdated`]).
    pub fn mark_backdated(&mut self, mark: Backdated) {
        self.backdated = Some(mark);
    }

    /// Marks this event back-dated when its `at` is earlier than `received` by more than
    /// `bound_secs`. Returns whether it is marked.
    pub fn check_backdated(&mut self, received: &str, bound_secs: u64) -> bool {
        if let Some(mark) = Backdated::check(&self.at, received, bound_secs) {
            self.backdated = Some(mark);
        }
        self.backdated.is_some()
    }

    pub fn backdated(&self) -> Option<&Backdated> {
        self.backdated.as_ref()
    }

    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    pub fn at(&self) -> &str {
        &self.at
    }

    pub fn body(&self) -> &str {
        &self.body
    }

    /// The canonical bytes of this event as number `seq`: `{"seq":N,"at":..,"kind":..,"body":..}`,
    /// with `,"backdated":{..}` before the closing brace for a back-dated event.
    /// These bytes are stored, hashed and sent unchanged.
    pub fn canonical(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + self.at.len() + 64);
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(b",\"at\":");
        write_json_str(&mut out, &self.at);
        out.extend_from_slice(b",\"kind\":");
        write_json_str(&mut out, self.kind.as_str());
        out.extend_from_slice(b",\"body\":");
        out.extend_from_slice(self.body.as_bytes());
        if let Some(mark) = &self.backdated {
            out.extend_from_slice(b",\"backdated\":");
            // Strings and a number: serde_json never fails to write these into memory.
            serde_json::to_writer(&mut out, mark)
                .expect("writing a JSON object of strings into memory cannot fail");
        }
        out.push(b'}');
        out
    }
}

fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json never fails to write a &str into a Vec.
    serde_json::to_writer(&mut *out, s).expect("writing a JSON string into memory cannot fail");
}

/// The fields of a canonical event, borrowed from its bytes.
#[derive(Debug, Deserialize)]
pub struct CanonicalEvent<'a> {
    pub seq: u64,
    pub at: std::borrow::Cow<'a, str>,
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub body: &'a serde_json::value::RawValue,
    /// Set by a box for a back-dated event; absent in events from boxes before the mark.
    #[serde(default)]
    pub backdated: Option<Backdated>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: &str = "2026-11-23T08:29:01.120+08:00";

    fn punch() -> Value {
        json!({"staff_id": "0451", "direction": "in", "method": "kiosk", "source": "kiosk-1"})
    }

    #[test]
    fn canonical_bytes_have_the_documented_shape() {
        let draft = EventDraft::new("punch", AT, &punch()).unwrap();
        let bytes = String::from_utf8(draft.canonical(41)).unwrap();
        assert!(bytes.starts_with(
            r#"{"seq":41,"at":"2026-11-23T08:29:01.120+08:00","kind":"punch","body":{"#
        ));
        let back: CanonicalEvent = serde_json::from_str(&bytes).unwrap();
        assert_eq!(back.seq, 41);
        assert_eq!(back.kind, "punch");
        let body: Value = serde_json::from_str(back.body.get()).unwrap();
        assert_eq!(body, punch());
    }

    #[test]
    fn a_backdated_mark_is_optional_and_read_back() {
        let mut draft = EventDraft::new("punch", AT, &punch()).unwrap();
        let plain = draft.canonical(3);
        assert!(!String::from_utf8_lossy(&plain).contains("backdated"));
        // Within the bound, or in the future: no mark.
        assert!(!draft.check_backdated("2026-11-23T08:39:01.120+08:00", 600));
        assert!(!draft.check_backdated("2026-11-23T08:00:00+08:00", 600));
        assert_eq!(
            draft.canonical(3),
            plain,
            "an unmarked event keeps its v1 bytes"
        );
        // Eleven minutes later with a ten minute bound: marked, with both times.
        assert!(draft.check_backdated("2026-11-23T00:40:01.120Z", 600));
        let bytes = draft.canonical(3);
        let back: CanonicalEvent = serde_json::from_slice(&bytes).unwrap();
        let mark = back.backdated.unwrap();
        assert_eq!(mark.at, AT);
        assert_eq!(mark.received_at, "2026-11-23T00:40:01.120Z");
        assert_eq!((mark.bound_secs, mark.last_upload_at), (600, None));
        let body: Value = serde_json::from_str(back.body.get()).unwrap();
        assert_eq!(body, punch(), "the body is untouched");
        // A reader from before the mark (no such field) still reads the event.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct V1<'a> {
            seq: u64,
            at: &'a str,
            kind: &'a str,
            #[serde(borrow)]
            body: &'a serde_json::value::RawValue,
        }
        let old: V1 = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(old.seq, 3);
        assert!(Backdated::check("nonsense", AT, 0).is_none());
    }

    #[test]
    fn unknown_fields_are_kept() {
        let mut body = punch();
        body["future_field"] = json!({"x": [1, 2]});
        let draft = EventDraft::new("punch", AT, &body).unwrap();
        assert!(draft.body().contains("future_field"));
    }

    #[test]
    fn bad_events_get_clear_errors() {
        let err = EventDraft::new("teleport", AT, &json!({})).unwrap_err();
        assert!(err.to_string().contains("unknown event kind"), "{err}");
        let err = EventDraft::new("punch", "yesterday", &punch()).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let err = EventDraft::new("punch", AT, &json!({"staff_id": "1"})).unwrap_err();
        assert!(
            err.to_string().contains("punch event body is invalid"),
            "{err}"
        );
        let err = EventDraft::new("punch", AT, &json!([1])).unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
        let case = json!({"case_no": "C1", "item_code": "I1", "item_name": "老年优待证", "unit": "民政局",
            "window": "W3", "stage": "accepted", "staff_id": "0451", "kind": "promised"});
        let err = EventDraft::new("case", AT, &case).unwrap_err();
        assert!(err.to_string().contains("limit_days"), "{err}");
        let rating = json!({"window": "W3", "level": 9, "channel": "pad"});
        let err = EventDraft::new("rating", AT, &rating).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn every_kind_accepts_its_documented_example() {
        let examples = [
            ("punch", punch()),
            (
                "case",
                json!({"case_no": "C1", "item_code": "I1", "item_name": "老年优待证", "unit": "民政局",
                "window": "W3", "stage": "accepted", "staff_id": "0451", "kind": "promised",
                "limit_days": 40, "limit_unit": "working"}),
            ),
            (
                "rating",
                json!({"case_no": "C1", "level": 5, "channel": "pad"}),
            ),
            (
                "complaint",
                json!({"complaint_no": "T1", "channel": "12345", "about": {"window": "W3"}, "text": "态度差"}),
            ),
            (
                "patrol",
                json!({"leader_id": "L1", "unit": "公安局", "findings": []}),
            ),
            (
                "duty",
                json!({"staff_id": "0451", "type": "leave", "leave_type": "事假", "from": "2026-11-23", "to": "2026-11-24"}),
            ),
            (
                "snapshot",
                json!({"camera_id": "cam1", "sha256": "00", "bytes": 10, "width": 640, "height": 480,
                "taken_at": AT, "trigger": "schedule"}),
            ),
            (
                "health",
                json!({"cpu": 1.5, "mem": 1, "disk_free": 1, "uptime": 1, "backlog_events": 0,
                "backlog_bytes": 0, "version": "0.1.0"}),
            ),
            (
                "cmd_result",
                json!({"cmd_id": "c1", "ok": true, "detail": "done"}),
            ),
            (
                "correction",
                json!({"corrects_seq": 3, "reason": "wrong staff", "replacement": punch()}),
            ),
        ];
        for (kind, body) in examples {
            EventDraft::new(kind, AT, &body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }
}
