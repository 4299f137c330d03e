//! The hub's configuration file (`sunlight-hub run --config hub.toml`): who is told at each step of
//! the warning ladder and how, the contacts, and the rules for ratings, complaints and supervision
//! letters. Every value has the default of OVERSIGHT.md; a missing file means all defaults.
//! `hub/hub.example.toml` shows every key and is checked by a test.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    pub notify: NotifyConfig,
    pub contacts: Vec<Contact>,
    pub ratings: RatingRules,
    pub complaints: ComplaintRules,
    pub letters: LetterConfig,
    pub pauses: PauseRules,
    pub attendance: AttendanceConfig,
    pub blobs: BlobConfig,
    pub fleet: FleetConfig,
    pub updates: UpdatesConfig,
}

/// `[updates]`: the keys agent update archives must be signed with (base64, as
/// `sunlight-provision update-key` prints them); none: `sunlight-hub update publish` refuses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatesConfig {
    pub verifying_keys: Vec<String>,
}

/// When a box is an alarm for the technicians (OVERSIGHT.md §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// A box silent this long in office hours is offline.
    pub offline_after_min: u32,
    /// A disk used above this percentage is nearly full.
    pub disk_used_percent: u32,
    /// A box clock further off the hub's than this is skewed.
    pub clock_skew_secs: u32,
    /// A backlog that only grew for this long means the box is not keeping up.
    pub backlog_growing_min: u32,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            offline_after_min: 30,
            disk_used_percent: 90,
            clock_skew_secs: 120,
            backlog_growing_min: 60,
        }
    }
}

/// Snapshot images at the hub: how long they are kept (seeds 002/003: 10–30 days) and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobConfig {
    pub retention_days: u32,
    /// Site id → days, for sites kept longer or shorter.
    pub retention_by_site: std::collections::BTreeMap<String, u32>,
    /// `local` (files under the data directory, the default) or `s3` (the `[blobs.s3]` bucket).
    pub store: BlobStoreKind,
    /// An S3-compatible bucket (MinIO, Ceph RGW, ...): used when `store = "s3"`.
    pub s3: Option<S3Config>,
    /// Image uploads (`PUT /api/v1/blobs/…`) read at once, at most; over it a box is answered 503
    /// with `Retry-After` and tries again later.
    pub max_concurrent_puts: usize,
}

impl Default for BlobConfig {
    fn default() -> Self {
        BlobConfig {
            retention_days: 30,
            retention_by_site: Default::default(),
            store: BlobStoreKind::Local,
            s3: None,
            max_concurrent_puts: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobStoreKind {
    Local,
    S3,
}

/// `[blobs.s3]`: where the images go when `store = "s3"` (decision 0010).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The S3 API's base URL, e.g. `http://minio.county:9000` (`https://` with `ca_file` for a
    /// certificate of the county CA).
    pub endpoint: String,
    pub bucket: String,
    /// Signed into every request; MinIO and Ceph accept any region they are configured with
    /// (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Put before every key, e.g. `sunlight/` (default none).
    #[serde(default)]
    pub prefix: String,
    pub access_key: String,
    /// The secret key in a file of its own (its first line; keep it `chmod 600`), or...
    #[serde(default)]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// ...in this file (then keep hub.toml itself `chmod 600`).
    #[serde(default)]
    pub secret_key: Option<String>,
    /// `http://host/bucket/key` (true, the default: MinIO, Ceph) or `http://bucket.host/key`.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// The CA that signed the endpoint's certificate, PEM, besides the system's.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Each request to the store may take this long.
    #[serde(default = "default_s3_timeout")]
    pub timeout_secs: u64,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_true() -> bool {
    true
}

fn default_s3_timeout() -> u64 {
    30
}

impl BlobConfig {
    pub fn days_for(&self, site: &str) -> u32 {
        self.retention_by_site
            .get(site)
            .copied()
            .unwrap_or(self.retention_days)
    }
}

/// Attendance rules (OVERSIGHT.md §3) and the office hours.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttendanceConfig {
    /// Minutes after the start (before the end) still on time.
    pub grace_min: i64,
    /// Late or early by more than this is half-day absence (旷工).
    pub absent_after_min: i64,
    /// A missing check-in or check-out counts as "absent" or "late_or_early".
    pub missing: String,
    /// Make-up punches (补卡) a clerk may have approved per month.
    pub makeup_quota: u32,
    /// A make-up punch must be requested within this many working days after the day.
    pub makeup_within_working_days: u32,
    /// A confirmed violation marks every colleague of the unit for this many months (捆绑考核).
    pub bundled_months: u32,
    /// Office hours by season; `from`/`to` are month-days (MM-DD), every year.
    pub schedules: Vec<SeasonSchedule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeasonSchedule {
    pub from: String,
    pub to: String,
    pub segments: Vec<SegmentConfig>,
}

/// `{ start = "08:30", end = "12:00", check_in = ["07:30", "10:00"], check_out = ["11:00", "13:00"] }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    pub start: String,
    pub end: String,
    pub check_in: [String; 2],
    pub check_out: [String; 2],
}

fn segment(start: &str, end: &str, check_in: [&str; 2], check_out: [&str; 2]) -> SegmentConfig {
    SegmentConfig {
        start: start.into(),
        end: end.into(),
        check_in: check_in.map(String::from),
        check_out: check_out.map(String::from),
    }
}

impl Default for AttendanceConfig {
    /// Summer (May–September) 08:30–12:00 and 14:30–17:30; winter 08:30–12:00 and 14:00–17:00.
    fn default() -> Self {
        AttendanceConfig {
            grace_min: 5,
            absent_after_min: 30,
            missing: "absent".into(),
            makeup_quota: 3,
            makeup_within_working_days: 3,
            bundled_months: 3,
            schedules: vec![
                SeasonSchedule {
                    from: "05-01".into(),
                    to: "09-30".into(),
                    segments: vec![
                        segment("08:30", "12:00", ["07:30", "10:00"], ["11:00", "13:30"]),
                        segment("14:30", "17:30", ["13:30", "16:00"], ["16:30", "20:00"]),
                    ],
                },
                SeasonSchedule {
                    from: "10-01".into(),
                    to: "04-30".into(),
                    segments: vec![
                        segment("08:30", "12:00", ["07:30", "10:00"], ["11:00", "13:00"]),
                        segment("14:00", "17:00", ["13:00", "15:30"], ["16:00", "20:00"]),
                    ],
                },
            ],
        }
    }
}

/// Each clock pause has its own sub-limit in working days, chosen by the first keyword found in
/// its reason (OVERSIGHT.md §2: 补正, and the Art. 45 steps 听证 招标 拍卖 检验 检测 检疫 鉴定 专家评审).
/// A pause still running past its sub-limit is flagged to the supervisor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PauseRules {
    /// Keyword → working days.
    pub limits: std::collections::BTreeMap<String, u32>,
    /// For a reason that names none of the keywords.
    pub other: u32,
}

impl Default for PauseRules {
    fn default() -> Self {
        let limits = [
            ("补正", 5),
            ("听证", 20),
            ("招标", 20),
            ("拍卖", 20),
            ("检验", 20),
            ("检测", 20),
            ("检疫", 20),
            ("鉴定", 30),
            ("专家评审", 20),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        PauseRules { limits, other: 20 }
    }
}

impl PauseRules {
    /// The sub-limit for a pause with this reason.
    pub fn limit_for(&self, reason: &str) -> u32 {
        self.limits
            .iter()
            .find(|(k, _)| reason.contains(k.as_str()))
            .map(|(_, v)| *v)
            .unwrap_or(self.other)
    }
}

/// Who receives a message: the case's handler or a role of the county.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The clerk handling the case (its `staff_id`).
    Handler,
    /// The chief of the case's unit (科室负责人).
    UnitChief,
    /// The county's supervisors (监督员, 纪检).
    Supervisor,
    /// County leadership (分管领导).
    Leadership,
    /// The field technicians (运维), told of boxes offline, disks full, clocks off.
    Technician,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Handler => "handler",
            Role::UnitChief => "unit_chief",
            Role::Supervisor => "supervisor",
            Role::Leadership => "leadership",
            Role::Technician => "technician",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// An HTTP endpoint that delivers messages (an SMS gateway, a chat bot). Without it messages go
    /// to the log only.
    pub webhook: Option<WebhookConfig>,
    /// Who is told at each step of the warning ladder (OVERSIGHT.md §2).
    pub ladder: Ladder,
    /// Who is told when a bad rating opens a work order.
    pub work_order: Vec<Role>,
    /// Who is told when a complaint arrives.
    pub complaint: Vec<Role>,
    pub digest: DigestConfig,
    /// Delay before the first retry of a failed delivery, in seconds; doubled per attempt.
    pub retry_secs: u64,
    /// Longest delay between retries, in seconds.
    pub retry_max_secs: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook: None,
            ladder: Ladder::default(),
            work_order: vec![Role::UnitChief],
            complaint: vec![Role::Supervisor],
            digest: DigestConfig::default(),
            retry_secs: 5,
            retry_max_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Messages are POSTed here as JSON `{key, to, name, role, subject, text}` with an
    /// `Idempotency-Key` header equal to `key`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ladder {
    pub yellow_light: Vec<Role>,
    pub red_light: Vec<Role>,
    pub yellow_card: Vec<Role>,
    pub red_card: Vec<Role>,
    pub supervision_letter: Vec<Role>,
}

impl Ladder {
    /// Who is told when a case reaches `level` (nobody for the blue countdown).
    pub fn roles(&self, level: crate::oversight::deadlines::WarningLevel) -> &[Role] {
        use crate::oversight::deadlines::WarningLevel::*;
        match level {
            Blue => &[],
            YellowLight => &self.yellow_light,
            RedLight => &self.red_light,
            YellowCard => &self.yellow_card,
            RedCard => &self.red_card,
            SupervisionLetter => &self.supervision_letter,
        }
    }
}

impl Default for Ladder {
    /// OVERSIGHT.md §2: yellow light → handler; red light → handler and unit chief; yellow card →
    /// unit chief and supervisor; red card → supervisor and leadership; letter → unit chief and
    /// supervisor.
    fn default() -> Self {
        use Role::*;
        Ladder {
            yellow_light: vec![Handler],
            red_light: vec![Handler, UnitChief],
            yellow_card: vec![UnitChief, Supervisor],
            red_card: vec![Supervisor, Leadership],
            supervision_letter: vec![UnitChief, Supervisor],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Roles whose messages are gathered into one daily digest instead of one message each
    /// (seed 000: SMS digests to leaders).
    pub roles: Vec<Role>,
    /// The office hour (UTC+8) at which the digest of the previous day is sent.
    pub hour: u32,
    /// Roles sent the monthly report's figures in one message on the 1st, from `hour`, until the
    /// 7th (OVERSIGHT.md §5: SMS digests to leaders use the report's figures). A contact with a
    /// site gets its township's figures, with a unit too its unit's, others the county's.
    pub report_roles: Vec<Role>,
    /// The weekly summary's figures too, on Mondays (until Wednesday).
    pub report_weekly: bool,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            roles: vec![Role::Leadership],
            hour: 8,
            report_roles: vec![Role::Leadership],
            report_weekly: false,
        }
    }
}

/// One person who receives messages in a role, optionally only for one site, unit or staff id.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub role: Role,
    pub name: String,
    /// The address the delivery channel understands (a mobile number for an SMS gateway).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// For `handler`: the staff id of the clerk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatingRules {
    /// A completed case left unrated this many days counts as `unrated_level` (OVERSIGHT.md §4).
    pub unrated_after_days: u32,
    pub unrated_level: u8,
    /// Ratings at or below this level open a work order (2 = 不满意).
    pub bad_at_or_below: u8,
    /// Working days to call the person back.
    pub callback_working_days: u32,
    /// Working days to fix the cause (5–15).
    pub fix_working_days: u32,
}

impl Default for RatingRules {
    fn default() -> Self {
        RatingRules {
            unrated_after_days: 7,
            unrated_level: 3,
            bad_at_or_below: 2,
            callback_working_days: 1,
            fix_working_days: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplaintRules {
    /// Working days after receipt by which each stage must be reached.
    pub investigate_working_days: u32,
    pub handle_working_days: u32,
    pub feedback_working_days: u32,
}

impl Default for ComplaintRules {
    fn default() -> Self {
        ComplaintRules {
            investigate_working_days: 3,
            handle_working_days: 10,
            feedback_working_days: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LetterConfig {
    /// Letter numbers read `<prefix>〔<year>〕<n>号`.
    pub prefix: String,
    /// Who issues the letters, printed on them.
    pub issuer: String,
}

impl Default for LetterConfig {
    fn default() -> Self {
        LetterConfig {
            prefix: "监建".into(),
            issuer: "县政务服务电子监察室".into(),
        }
    }
}

impl HubConfig {
    /// Reads and checks the file; every error names the key that is wrong.
    pub fn load(path: &Path) -> Result<HubConfig, crate::Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::Error::io(format!("reading {}", path.display()), e))?;
        HubConfig::parse(&text)
            .map_err(|e| crate::Error::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<HubConfig, String> {
        let config: HubConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        sunlight_protocol::update::verifying_keys(&self.updates.verifying_keys)
            .map_err(|e| format!("updates.verifying_keys: {e}"))?;
        let r = &self.ratings;
        if !(5..=15).contains(&r.fix_working_days) {
            return Err(format!(
                "ratings.fix_working_days = {} is outside 5–15",
                r.fix_working_days
            ));
        }
        if !(1..=5).contains(&r.unrated_level) || !(1..=5).contains(&r.bad_at_or_below) {
            return Err("ratings levels are 1 (非常不满意) to 5 (非常满意)".into());
        }
        if self.notify.digest.hour > 23 {
            return Err(format!(
                "notify.digest.hour = {} is not an hour",
                self.notify.digest.hour
            ));
        }
        if let Some(w) = &self.notify.webhook
            && !(w.url.starts_with("http://") || w.url.starts_with("https://"))
        {
            return Err(format!("notify.webhook.url {:?} must be http(s)://", w.url));
        }
        crate::oversight::attendance::Office::from_config(&self.attendance)?;
        if self.blobs.max_concurrent_puts == 0 {
            return Err(
                "blobs.max_concurrent_puts must be at least 1 (uploads read at once)".into(),
            );
        }
        match (&self.blobs.store, &self.blobs.s3) {
            (BlobStoreKind::S3, None) => {
                return Err(
                    "blobs.store = \"s3\" needs a [blobs.s3] section (endpoint, bucket, access_key, secret_key_file)".into(),
                );
            }
            (_, Some(s3)) => {
                if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
                    return Err(format!(
                        "blobs.s3.endpoint {:?} must be http(s)://, e.g. \"http://minio.county:9000\"",
                        s3.endpoint
                    ));
                }
                if s3.bucket.trim().is_empty() || s3.access_key.trim().is_empty() {
                    return Err("blobs.s3.bucket and blobs.s3.access_key must not be empty".into());
                }
                if s3.secret_key.is_some() == s3.secret_key_file.is_some() {
                    return Err(
                        "blobs.s3: give the secret key in secret_key_file (or secret_key), one of the two".into(),
                    );
                }
                if s3.timeout_secs == 0 {
                    return Err("blobs.s3.timeout_secs must be at least 1".into());
                }
            }
            (BlobStoreKind::Local, None) => {}
        }
        let c = &self.complaints;
        if !(c.investigate_working_days <= c.handle_working_days
            && c.handle_working_days <= c.feedback_working_days)
        {
            return Err("complaints: investigate ≤ handle ≤ feedback working days".into());
        }
        for (i, contact) in self.contacts.iter().enumerate() {
            if contact.to.trim().is_empty() {
                return Err(format!(
                    "contacts[{i}] ({}) has an empty `to`",
                    contact.name
                ));
            }
            if contact.role == Role::Handler && contact.staff_id.is_none() {
                return Err(format!(
                    "contacts[{i}] ({}) is a handler and needs the clerk's staff_id",
                    contact.name
                ));
            }
        }
        Ok(())
    }

    /// The contacts who hold `role` for a case of `site`/`unit` handled by `staff_id`.
    pub fn recipients<'a>(
        &'a self,
        role: Role,
        site: &'a str,
        unit: &'a str,
        staff_id: &'a str,
    ) -> impl Iterator<Item = &'a Contact> + 'a {
        self.contacts.iter().filter(move |c| {
            c.role == role
                && c.site.as_deref().is_none_or(|s| s == site)
                && c.unit.as_deref().is_none_or(|u| u == unit)
                && (role != Role::Handler || c.staff_id.as_deref() == Some(staff_id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses_and_sets_every_section() {
        let config = HubConfig::parse(include_str!("../hub.example.toml")).unwrap();
        assert!(config.notify.webhook.is_some());
        assert!(!config.contacts.is_empty());
        assert_eq!(config.ratings.unrated_after_days, 7);
        assert_eq!(config.attendance.schedules.len(), 2);
        assert_eq!(config.pauses.limit_for("鉴定"), 30);
        assert_eq!(config.fleet.offline_after_min, 30);
        assert!(config.contacts.iter().any(|c| c.role == Role::Technician));
        assert_eq!(config.blobs.store, BlobStoreKind::Local);
        let s3 = config.blobs.s3.unwrap();
        assert_eq!(s3.bucket, "sunlight-snapshots");
        assert!(s3.path_style && s3.secret_key_file.is_some() && s3.ca_file.is_some());
    }

    #[test]
    fn an_s3_store_needs_its_section_and_one_secret() {
        let e = HubConfig::parse("[blobs]\nstore = \"s3\"").unwrap_err();
        assert!(e.contains("[blobs.s3]"), "{e}");
        let e = HubConfig::parse("[blobs]\nstore = \"ftp\"").unwrap_err();
        assert!(e.contains("ftp"), "{e}");
        let section = "[blobs]\nstore = \"s3\"\n[blobs.s3]\nbucket = \"b\"\naccess_key = \"k\"\n";
        let e = HubConfig::parse(&format!(
            "{section}endpoint = \"minio:9000\"\nsecret_key = \"s\""
        ))
        .unwrap_err();
        assert!(e.contains("blobs.s3.endpoint"), "{e}");
        let e =
            HubConfig::parse(&format!("{section}endpoint = \"http://minio:9000\"")).unwrap_err();
        assert!(e.contains("secret_key_file"), "{e}");
        let c = HubConfig::parse(&format!(
            "{section}endpoint = \"http://minio:9000\"\nsecret_key = \"s\""
        ))
        .unwrap();
        let s3 = c.blobs.s3.unwrap();
        assert_eq!((s3.region.as_str(), s3.timeout_secs), ("us-east-1", 30));
    }

    #[test]
    fn defaults_follow_the_oversight_rules() {
        let config = HubConfig::parse("").unwrap();
        assert_eq!(
            config.notify.ladder.red_light,
            vec![Role::Handler, Role::UnitChief]
        );
        assert_eq!(config.ratings.fix_working_days, 5);
        assert_eq!(config.letters.prefix, "监建");
        assert_eq!(config.pauses.limit_for("申请材料需补正"), 5);
        assert_eq!(config.pauses.limit_for("组织听证"), 20);
        assert_eq!(config.pauses.limit_for("其他"), 20);
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = HubConfig::parse("[ratings]\nfix_working_days = 30").unwrap_err();
        assert!(e.contains("fix_working_days"), "{e}");
        let e = HubConfig::parse(
            "[[attendance.schedules]]\nfrom = \"01-01\"\nto = \"12-31\"\nsegments = [{ start = \"8:3x\", end = \"12:00\", check_in = [\"07:30\", \"10:00\"], check_out = [\"11:00\", \"13:00\"] }]",
        )
        .unwrap_err();
        assert!(e.contains("8:3x"), "{e}");
        let e = HubConfig::parse("[attendance]\nmissing = \"ignore\"").unwrap_err();
        assert!(e.contains("attendance.missing"), "{e}");
        let e = HubConfig::parse("[notify]\nwebhok = 1").unwrap_err();
        assert!(e.contains("webhok"), "{e}");
        let e = HubConfig::parse("[[contacts]]\nrole = \"handler\"\nname = \"王\"\nto = \"1\"")
            .unwrap_err();
        assert!(e.contains("staff_id"), "{e}");
    }

    #[test]
    fn recipients_match_role_site_unit_and_handler() {
        let config = HubConfig::parse(
            r#"
[[contacts]]
role = "unit_chief"
name = "民政局 chief"
to = "13800000001"
unit = "民政局"
[[contacts]]
role = "supervisor"
name = "county supervisor"
to = "13800000002"
[[contacts]]
role = "handler"
name = "clerk"
to = "13800000003"
staff_id = "S01"
"#,
        )
        .unwrap();
        let names = |role, unit, staff| {
            config
                .recipients(role, "x", unit, staff)
                .map(|c| c.to.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Role::UnitChief, "民政局", "S01"), ["13800000001"]);
        assert!(names(Role::UnitChief, "公安局", "S01").is_empty());
        assert_eq!(names(Role::Supervisor, "公安局", "S09"), ["13800000002"]);
        assert_eq!(names(Role::Handler, "民政局", "S01"), ["13800000003"]);
        assert!(names(Role::Handler, "民政局", "S02").is_empty());
    }
}
