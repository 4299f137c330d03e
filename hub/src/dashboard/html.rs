//! The dashboard's HTML: one page frame (menu, language switch, sign-out form), escaping, and the
//! few pieces every page uses. zh-CN first, English on request (the `lang` cookie). No scripts and
//! no outside assets: the pages work on an office PC without internet and without JavaScript.

use super::accounts::{Role, User};
use crate::oversight::deadlines::WarningLevel;

/// Escapes text for HTML content and attribute values (the letters' escaper: one way to do it).
pub use crate::store::letters::escape as esc;

/// The page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    /// Picks the Chinese or the English text.
    pub fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }
}

/// Percent-encodes a query-string value.
pub fn url(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The menu entries: (path, zh, en, who sees it).
const MENU: [(&str, &str, &str, &[Role]); 13] = [
    (
        "/",
        "总览",
        "Overview",
        &[Role::Supervisor, Role::Head, Role::Admin],
    ),
    (
        "/warnings",
        "预警",
        "Warnings",
        &[Role::Supervisor, Role::Head, Role::Admin],
    ),
    (
        "/cases",
        "办件",
        "Cases",
        &[Role::Supervisor, Role::Head, Role::Admin],
    ),
    (
        "/attendance",
        "考勤",
        "Attendance",
        &[Role::Supervisor, Role::Head, Role::Admin],
    ),
    (
        "/reports",
        "报表",
        "Reports",
        &[Role::Supervisor, Role::Head, Role::Admin],
    ),
    (
        "/fleet",
        "设备",
        "Fleet",
        &[Role::Supervisor, Role::Head, Role::Technician, Role::Admin],
    ),
    (
        "/wall",
        "抓拍",
        "Snapshots",
        &[Role::Supervisor, Role::Head, Role::Technician, Role::Admin],
    ),
    ("/admin/users", "账号", "Accounts", &[Role::Admin]),
    ("/admin/items", "事项", "Items", &[Role::Admin]),
    ("/admin/calendar", "日历", "Calendar", &[Role::Admin]),
    ("/admin/schedules", "作息", "Office hours", &[Role::Admin]),
    ("/admin/notify", "通知", "Notifications", &[Role::Admin]),
    ("/admin/audit", "审计", "Audit log", &[Role::Admin]),
];

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,'PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;color:#1f2328;background:#f6f7f9}
header{background:#8b1a1a;color:#fff;padding:.4em 1em;display:flex;flex-wrap:wrap;gap:1em;align-items:center}
header a{color:#fff;text-decoration:none;padding:.2em .5em;border-radius:3px}
header a.on,header a:hover{background:rgba(255,255,255,.2)}
header .brand{font-weight:bold;margin-right:1em}
header .me{margin-left:auto;display:flex;gap:.6em;align-items:center}
header form{margin:0}
header button{background:none;border:1px solid #fff;color:#fff;border-radius:3px;cursor:pointer}
main{padding:1em;max-width:1400px}
h1{font-size:1.4em;margin:.2em 0 .6em}
h2{font-size:1.15em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;margin:.3em 0 1em;min-width:40%}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4;white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1em}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em}
.card h2{margin-top:.2em}
.lv{display:inline-block;padding:0 .5em;border-radius:3px;color:#fff;white-space:nowrap}
.lv-blue{background:#1f6feb}.lv-yellow_light{background:#d4a72c;color:#000}.lv-red_light{background:#cf222e}
.lv-yellow_card{background:#bf8700;color:#000;outline:2px solid #000}.lv-red_card{background:#a40e26;outline:2px solid #000}
.lv-supervision_letter{background:#3b0a0a}
.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}.muted{color:#656d76}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:.9em}
input,select,button{font:inherit;padding:.2em .4em}
.error{background:#ffebe9;border:1px solid #cf222e;padding:.5em 1em;border-radius:4px}
.notice{background:#dafbe1;border:1px solid #1a7f37;padding:.5em 1em;border-radius:4px}
.provisional{background:#fff8c5;border:1px solid #d4a72c;padding:.3em .8em;border-radius:4px}
span.provisional{padding:0 .3em;font-size:.85em;white-space:nowrap}
.backdated{background:#ffebe9;border:1px solid #cf222e;padding:0 .3em;border-radius:4px;font-size:.85em}
.tabs a{margin-right:1em}.tabs a.on{font-weight:bold;text-decoration:none;color:#1f2328}
@media print{header,form.filters{display:none}body{background:#fff}}
";

/// A whole page around `body`. `path` marks the menu entry; `refresh` adds a meta refresh.
pub struct Frame<'a> {
    pub lang: Lang,
    pub user: &'a User,
    pub csrf: &'a str,
    pub path: &'a str,
    /// The current path with its query, for the language switch to come back to.
    pub here: &'a str,
    pub title: String,
    pub refresh_secs: Option<u32>,
}

impl Frame<'_> {
    pub fn render(&self, body: &str) -> String {
        let l = self.lang;
        let mut menu = String::new();
        for (path, zh, en, roles) in MENU {
            if !roles.contains(&self.user.role) {
                continue;
            }
            let on = if path == self.path {
                " class=\"on\""
            } else {
                ""
            };
            menu.push_str(&format!("<a href=\"{path}\"{on}>{}</a>", l.t(zh, en)));
        }
        let scope = match (&self.user.site, &self.user.unit) {
            (Some(s), Some(u)) => format!(" · {} {}", esc(s), esc(u)),
            (Some(s), None) => format!(" · {}", esc(s)),
            _ => String::new(),
        };
        let (other, other_name) = match l {
            Lang::Zh => ("en", "English"),
            Lang::En => ("zh", "中文"),
        };
        let refresh = self
            .refresh_secs
            .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
            .unwrap_or_default();
        format!(
            "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{refresh}\
<title>{title} · {brand}</title><style>{STYLE}</style></head>\n<body>\
<header><span class=\"brand\">☀ {brand}</span>{menu}\
<span class=\"me\"><a href=\"/lang?to={other}&amp;back={back}\">{other_name}</a>\
<span>{name} ({role}{scope})</span>\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<button type=\"submit\">{logout}</button></form></span></header>\n<main>\n<h1>{title}</h1>\n{body}\n</main></body></html>\n",
            lang = l.code(),
            title = esc(&self.title),
            brand = l.t("阳光政务监督", "Sunlight oversight"),
            back = esc(&url(self.here)),
            name = esc(&self.user.name),
            role = l.t(self.user.role.zh(), self.user.role.as_str()),
            csrf = esc(self.csrf),
            logout = l.t("退出", "Sign out"),
        )
    }
}

/// A warning level as a coloured label.
pub fn level_badge(lang: Lang, level: &str) -> String {
    match WarningLevel::parse(level) {
        Some(l) => format!(
            "<span class=\"lv lv-{}\">{}</span>",
            l.as_str(),
            match lang {
                Lang::Zh => l.zh(),
                Lang::En => level_en(l),
            }
        ),
        None => esc(level),
    }
}

pub fn level_name(lang: Lang, l: WarningLevel) -> &'static str {
    match lang {
        Lang::Zh => l.zh(),
        Lang::En => level_en(l),
    }
}

fn level_en(l: WarningLevel) -> &'static str {
    match l {
        WarningLevel::Blue => "blue light",
        WarningLevel::YellowLight => "yellow light",
        WarningLevel::RedLight => "red light",
        WarningLevel::YellowCard => "yellow card",
        WarningLevel::RedCard => "red card",
        WarningLevel::SupervisionLetter => "supervision letter",
    }
}

/// A stage name (受理 accepted, ...).
pub fn stage_name(lang: Lang, stage: &str) -> String {
    let (zh, en) = match stage {
        "received" => ("收件", "received"),
        "accepted" => ("受理", "accepted"),
        "undertaken" => ("承办", "undertaken"),
        "reviewed" => ("审核", "reviewed"),
        "approved" => ("批准", "approved"),
        "completed" => ("办结", "completed"),
        "rejected" => ("不予受理", "rejected"),
        "paused" => ("暂停", "paused"),
        "resumed" => ("恢复", "resumed"),
        "extended" => ("延期", "extended"),
        "withdrawn" => ("撤回", "withdrawn"),
        other => return esc(other),
    };
    lang.t(zh, en).to_owned()
}

/// The choices of a site filter: "all" first for a viewer who sees the whole county (`county`),
/// then each site.
pub fn site_choices(l: Lang, county: bool, sites: &[String]) -> Vec<(String, String)> {
    let all = county.then(|| (String::new(), l.t("全部", "all").to_owned()));
    all.into_iter()
        .chain(sites.iter().map(|s| (s.clone(), s.clone())))
        .collect()
}

/// `<option>`s for a select, the current value selected.
pub fn options(choices: &[(String, String)], current: Option<&str>) -> String {
    choices
        .iter()
        .map(|(value, label)| {
            format!(
                "<option value=\"{}\"{}>{}</option>",
                esc(value),
                if current == Some(value.as_str()) {
                    " selected"
                } else {
                    ""
                },
                esc(label)
            )
        })
        .collect()
}

/// A milliseconds clock offset as people read it.
pub fn offset(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms.abs() >= 120_000 => {
            format!("<span class=\"bad\">{:+.1} s</span>", ms as f64 / 1000.0)
        }
        Some(ms) => format!("{:+.1} s", ms as f64 / 1000.0),
    }
}

/// Epoch milliseconds as a China Standard Time timestamp.
pub fn time_ms(ms: Option<i64>) -> String {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| {
            t.with_timezone(&cst)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

/// The note under a page whose figures rest on a provisional calendar year (decision 0014):
/// 「暂按法定节假日计算，待录入 YYYY 年放假安排」, with the English after it on English pages.
pub fn provisional_note(l: Lang, year: i32) -> String {
    let zh = crate::oversight::calendar::provisional_note_zh(year);
    let text = match l {
        Lang::Zh => zh,
        Lang::En => format!(
            "{zh} ({})",
            crate::oversight::calendar::provisional_note_en(year)
        ),
    };
    format!("<p class=\"provisional\">※ {}</p>", esc(&text))
}

/// The mark beside one provisional figure (a due day, a verdict); the note explains it.
pub fn provisional_mark(l: Lang, year: i32) -> String {
    format!(
        "<span class=\"provisional\" title=\"{}\">{}</span>",
        esc(&crate::oversight::calendar::provisional_note_zh(year)),
        l.t("暂", "provisional")
    )
}

/// The mark of an event its box recorded as back-dated (issue 14, item 6), with both times: the
/// event's own, and when the box received it (for a terminal record, also the terminal's previous
/// upload, which it is older than).
pub fn backdated_mark(l: Lang, m: &sunlight_protocol::Backdated) -> String {
    let text = match (l, &m.last_upload_at) {
        (Lang::Zh, None) => format!("倒签：记为 {}，盒子 {} 收到", m.at, m.received_at),
        (Lang::Zh, Some(last)) => format!(
            "倒签：记为 {}，早于考勤机上次上传 {}，盒子 {} 收到",
            m.at, last, m.received_at
        ),
        (Lang::En, None) => format!(
            "back-dated: dated {}, received by the box {}",
            m.at, m.received_at
        ),
        (Lang::En, Some(last)) => format!(
            "back-dated: dated {}, before the terminal's previous upload {}, received by the box {}",
            m.at, last, m.received_at
        ),
    };
    format!(
        "<span class=\"backdated\" title=\"{}\">{}</span>",
        esc(&match l {
            Lang::Zh => format!("超过 {} 秒的倒签（事件照常计入）", m.bound_secs),
            Lang::En => format!(
                "earlier than received by more than {} s (counted as any other)",
                m.bound_secs
            ),
        }),
        esc(&text)
    )
}

/// The outcome of a form as a line above the page: `notice` when it worked, `error` when not;
/// nothing without one.
pub fn flash(message: Option<&(bool, String)>) -> String {
    match message {
        Some((ok, m)) => format!(
            "<p class=\"{}\">{}</p>",
            if *ok { "notice" } else { "error" },
            esc(m)
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provisional_note_names_its_year_in_both_languages() {
        let zh = provisional_note(Lang::Zh, 2027);
        assert_eq!(
            zh,
            "<p class=\"provisional\">※ 暂按法定节假日计算，待录入 2027 年放假安排</p>"
        );
        let en = provisional_note(Lang::En, 2028);
        assert!(en.contains("待录入 2028 年放假安排"), "{en}");
        assert!(
            en.contains("until 2028&#39;s official arrangement is loaded"),
            "{en}"
        );
        assert!(provisional_mark(Lang::Zh, 2027).contains("title=\"暂按法定节假日计算"));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            url("/cases?view=done&x=尚"),
            "%2Fcases%3Fview%3Ddone%26x%3D%E5%B0%9A"
        );
        assert_eq!(url("a-b_c.d~"), "a-b_c.d~");
    }

    #[test]
    fn the_frame_escapes_the_user_and_title() {
        let user = User {
            id: 1,
            name: "<b>x</b>".into(),
            role: Role::Head,
            site: Some("s\"".into()),
            unit: None,
            disabled: false,
        };
        let page = Frame {
            lang: Lang::Zh,
            user: &user,
            csrf: "tok",
            path: "/",
            here: "/",
            title: "<script>".into(),
            refresh_secs: None,
        }
        .render("");
        assert!(!page.contains("<b>x</b>") && !page.contains("<script>"));
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && page.contains("s&quot;"));
        assert!(
            !page.contains("/admin/users"),
            "a head has no accounts menu"
        );
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }
}
