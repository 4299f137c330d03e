//! Office hours and attendance rules (`/admin/schedules`, admins only), a [`Section`]: hub.toml's
//! `[attendance]` is the default; an admin's copy saved here wins over it, in the running hub at
//! once, until it is reset to hub.toml. Checked by [`settings::parse_attendance`]: times parse,
//! segments in order without overlap, check-in and check-out windows around their segment, seasons
//! covering the year once.

use super::Viewer;
use super::section::{self, Section};
use crate::config::HubConfig;
use crate::store::settings::{self, ATTENDANCE};
use axum::extract::{Form, State};
use axum::response::Response;
use std::collections::HashMap;

pub const SECTION: Section = Section {
    key: ATTENDANCE,
    path: "/admin/schedules",
    field: "attendance",
    title: ("作息与考勤规则", "Office hours and attendance"),
    from_file: (
        "当前生效：hub.toml 的 [attendance]（尚无管理员保存的版本）。",
        "In force: hub.toml's [attendance] (no admin copy saved).",
    ),
    help: (
        "格式同 hub.toml 的 [attendance] 一节（不含标题行）：grace_min 迟到宽限分钟，absent_after_min 超过即按旷工，makeup_quota 每月补卡次数，schedules 为各季节（from/to 为 MM-DD）的办公时段及签到、签退窗口。保存后立即用于考勤、设备在岗时段与报表，无需重启。",
        "As hub.toml's [attendance] section, without its header: grace_min, absent_after_min, makeup_quota a month, and schedules by season (from/to as MM-DD) with each segment's check-in and check-out windows. Once saved it is used at once for attendance, office hours and reports, without a restart.",
    ),
    current: |c| toml::to_string(&c.attendance).unwrap_or_default(),
    apply: |text, c| {
        c.attendance = settings::parse_attendance(text)?;
        Ok(())
    },
    reset: |c, file| c.attendance = file.attendance.clone(),
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

/// A short digest of the rules, for the audit log's before → after.
fn summary(config: &HubConfig) -> String {
    let c = &config.attendance;
    let seasons: Vec<String> = c
        .schedules
        .iter()
        .map(|s| {
            let segs: Vec<String> = s
                .segments
                .iter()
                .map(|g| format!("{}-{}", g.start, g.end))
                .collect();
            format!("{}..{} {}", s.from, s.to, segs.join(","))
        })
        .collect();
    format!(
        "grace {} absent {} quota {} | {}",
        c.grace_min,
        c.absent_after_min,
        c.makeup_quota,
        seasons.join(" | ")
    )
}
