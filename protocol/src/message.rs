//! What the hub says back (acks, commands) and the agent's retained status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `down/ack`: everything with `seq <= through_seq` is committed at the hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub through_seq: u64,
    /// The hub's clock (RFC 3339), from which the agent estimates its clock offset.
    pub hub_time: String,
    #[serde(default)]
    pub rejected: Vec<Rejected>,
}

/// An event (or a whole batch, when `seq` is absent) the hub refused, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub reason: String,
}

/// The commands a hub can send a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Snapshot,
    ReloadConfig,
    SetRoster,
    Update,
    Restart,
    UploadLogs,
    /// The county's working-day calendar (official years and admins' overrides) for the box's
    /// snapshot schedule ([`crate::holidays::PushedCalendar`]); sent by the hub itself.
    SetCalendar,
}

/// `down/cmd`: executed at most once per `cmd_id`, answered with a `cmd_result` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub cmd_id: String,
    pub kind: CommandKind,
    #[serde(default)]
    pub args: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// `status` (retained; the offline form is the agent's last will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `online` or `offline`.
    pub state: String,
    #[serde(default)]
    pub version: String,
}

impl Status {
    pub fn online(version: &str) -> Status {
        Status {
            state: "online".into(),
            version: version.into(),
        }
    }
    pub fn offline(version: &str) -> Status {
        Status {
            state: "offline".into(),
            version: version.into(),
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a status always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_reads_the_documented_form() {
        let ack: Ack = serde_json::from_str(r#"{ "through_seq": 41, "hub_time": "2026-11-23T08:29:01+08:00", "rejected": [{"seq": 40, "reason": "bad"}] }"#).unwrap();
        assert_eq!(ack.through_seq, 41);
        assert_eq!(ack.rejected[0].seq, Some(40));
        let ack: Ack = serde_json::from_str(r#"{ "through_seq": 0, "hub_time": "x" }"#).unwrap();
        assert!(ack.rejected.is_empty());
    }

    #[test]
    fn command_reads_the_documented_form() {
        let cmd: Command = serde_json::from_str(r#"{ "cmd_id": "c1", "kind": "snapshot", "args": {"camera": "cam1"}, "expires": "2026-11-23T09:00:00+08:00" }"#).unwrap();
        assert_eq!(cmd.kind, CommandKind::Snapshot);
    }
}
