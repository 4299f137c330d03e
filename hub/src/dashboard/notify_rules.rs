//! Notification rules (`/admin/notify`, admins only), a [`Section`]: who is told at each step of the
//! warning ladder, of a work order, of a complaint, whose messages go into the daily digest and at
//! what hour, and the contacts. hub.toml's `[notify]` and `[[contacts]]` are the default; an admin's
//! copy saved here wins, at once: supervision enqueues messages with the live rules and the sender
//! reads the digest's roles and hour each round. The webhook (its token is a secret) and the retry
//! delays stay in hub.toml; a text naming them is refused. Checked by [`settings::parse_notify`].

use super::Viewer;
use super::section::{self, Section};
use crate::config::{HubConfig, Role};
use crate::store::settings::{self, NOTIFY, NotifyRules};
use axum::extract::{Form, State};
use axum::response::Response;
use std::collections::HashMap;

pub const SECTION: Section = Section {
    key: NOTIFY,
    path: "/admin/notify",
    field: "rules",
    title: ("通知规则", "Notification rules"),
    from_file: (
        "当前生效：hub.toml 的 [notify] 与 [[contacts]]（尚无管理员保存的版本）。",
        "In force: hub.toml's [notify] and [[contacts]] (no admin copy saved).",
    ),
    help: (
        "TOML 格式：ladder 为预警各级（yellow_light 黄灯、red_light 红灯、yellow_card 黄牌、red_card 红牌、supervision_letter 督办函）通知的角色，work_order 差评工单、complaint 投诉通知的角色，digest 的 roles 改为每日汇总发送、hour 为发送时刻（0–23 点，北京时间），[[contacts]] 为联系人（role、name、to 必填，site、unit、staff_id 可选）。角色：handler、unit_chief、supervisor、leadership、technician。推送网关（webhook 地址与令牌，属于机密）和重试间隔只能在 hub.toml 中设置，此处不显示也不接受。保存后立即生效，无需重启。",
        "TOML: ladder gives the roles told at each warning step (yellow_light, red_light, yellow_card, red_card, supervision_letter), work_order and complaint the roles told of a work order and a complaint, digest the roles whose messages go into one daily digest and its hour (0–23, UTC+8), and [[contacts]] the people (role, name and to required; site, unit, staff_id optional). Roles: handler, unit_chief, supervisor, leadership, technician. The delivery gateway (webhook address and token, a secret) and the retry delays are set in hub.toml only: not shown here and refused. Once saved the rules are in force at once, without a restart.",
    ),
    current: |c| toml::to_string(&NotifyRules::of(c)).unwrap_or_default(),
    apply: |text, c| {
        settings::parse_notify(text)?.apply(c);
        Ok(())
    },
    reset: |c, file| NotifyRules::of(file).apply(c),
    summary,
};

pub async fn page(State(state): State<super::DashState>, viewer: Viewer) -> Response {
    section::page(&SECTION, &state, &viewer).await
}

pub async fn save(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    section::save(&SECTION, &state, &viewer, &form).await
}

fn roles(r: &[Role]) -> String {
    let names: Vec<&str> = r.iter().map(|r| r.as_str()).collect();
    names.join(",")
}

/// A short digest of the rules, for the audit log's before → after (names and roles of the
/// contacts, not their numbers).
fn summary(c: &HubConfig) -> String {
    let n = &c.notify;
    let contacts: Vec<String> = c
        .contacts
        .iter()
        .map(|p| format!("{}:{}", p.role.as_str(), p.name))
        .collect();
    format!(
        "ladder {}/{}/{}/{}/{} | work_order {} | complaint {} | digest {}@{} | contacts {}",
        roles(&n.ladder.yellow_light),
        roles(&n.ladder.red_light),
        roles(&n.ladder.yellow_card),
        roles(&n.ladder.red_card),
        roles(&n.ladder.supervision_letter),
        roles(&n.work_order),
        roles(&n.complaint),
        roles(&n.digest.roles),
        n.digest.hour,
        contacts.join(",")
    )
}
