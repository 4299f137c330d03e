//! MQTT topics of protocol v1: `sunlight/v1/{site}/{device}/...`.

use crate::ids::{DeviceId, SiteId};

/// What the hub subscribes to for everything agents send.
pub const HUB_UP_FILTER: &str = "sunlight/v1/+/+/up/#";
/// The same through an MQTT shared subscription, when several hub processes share the load.
pub const HUB_UP_SHARED_FILTER: &str = "$share/hub/sunlight/v1/+/+/up/#";
/// Agents' retained online/offline status (their last will).
pub const HUB_STATUS_FILTER: &str = "sunlight/v1/+/+/status";

/// The channel a topic addresses under a device's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `up/batch`: a signed batch of events, agent → hub.
    Batch,
    /// `up/cmd_result`: a command outcome, agent → hub.
    CmdResult,
    /// `down/ack`: the hub's acknowledgement, hub → agent.
    Ack,
    /// `down/cmd`: a command, hub → agent.
    Cmd,
    /// `status`: retained online/offline, agent (LWT).
    Status,
}

impl Channel {
    fn suffix(self) -> &'static str {
        match self {
            Channel::Batch => "up/batch",
            Channel::CmdResult => "up/cmd_result",
            Channel::Ack => "down/ack",
            Channel::Cmd => "down/cmd",
            Channel::Status => "status",
        }
    }
}

/// The topic of `channel` for one device.
pub fn topic(site: &SiteId, device: &DeviceId, channel: Channel) -> String {
    format!("sunlight/v1/{site}/{device}/{}", channel.suffix())
}

/// Splits a v1 topic into its site, device and channel; `None` for anything else.
pub fn parse(topic: &str) -> Option<(SiteId, DeviceId, Channel)> {
    let rest = topic.strip_prefix("sunlight/v1/")?;
    let mut parts = rest.splitn(3, '/');
    let site = SiteId::new(parts.next()?).ok()?;
    let device = DeviceId::new(parts.next()?).ok()?;
    let channel = match parts.next()? {
        "up/batch" => Channel::Batch,
        "up/cmd_result" => Channel::CmdResult,
        "down/ack" => Channel::Ack,
        "down/cmd" => Channel::Cmd,
        "status" => Channel::Status,
        _ => return None,
    };
    Some((site, device, channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_channel() {
        let site = SiteId::new("suixian-shangshi").unwrap();
        let device = DeviceId::new("box-01").unwrap();
        for ch in [
            Channel::Batch,
            Channel::CmdResult,
            Channel::Ack,
            Channel::Cmd,
            Channel::Status,
        ] {
            let t = topic(&site, &device, ch);
            assert_eq!(parse(&t), Some((site.clone(), device.clone(), ch)));
        }
        assert_eq!(
            topic(&site, &device, Channel::Batch),
            "sunlight/v1/suixian-shangshi/box-01/up/batch"
        );
    }

    #[test]
    fn ignores_foreign_topics() {
        for t in [
            "sunlight/v2/a/b/up/batch",
            "sunlight/v1/A/b/up/batch",
            "sunlight/v1/a/b/up/other",
            "x",
            "",
        ] {
            assert_eq!(parse(t), None, "{t}");
        }
    }
}
