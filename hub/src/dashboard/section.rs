//! One page for a section of the hub's rules edited as TOML text by admins: hub.toml's section is
//! the default; an admin's copy saved here (`settings` table) wins over it, in the running hub at
//! once (swapped into [`crate::supervise::Supervision`]), until it is reset to hub.toml. Each
//! section is described by a [`Section`]: office hours ([`super::schedules`]) and notification
//! rules ([`super::notify_rules`]).

use super::accounts::Role;
use super::html::{self, Lang, esc};
use super::{Viewer, message_page};
use crate::config::HubConfig;
use crate::store::settings::{self, Refused, Saved};
use crate::web::{read, write};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;

/// What differs between the sections.
pub struct Section {
    /// The key of the admins' copy in the `settings` table, and of the audit actions
    /// (`settings.<key>`, `settings.<key>.reset`).
    pub key: &'static str,
    /// The page's path, where the form is posted too.
    pub path: &'static str,
    /// The textarea's field name.
    pub field: &'static str,
    /// Page title (zh, en).
    pub title: (&'static str, &'static str),
    /// What is in force when no admin copy is saved (zh, en).
    pub from_file: (&'static str, &'static str),
    /// The help text under the title (zh, en).
    pub help: (&'static str, &'static str),
    /// The section of `config` as text.
    pub current: fn(&HubConfig) -> String,
    /// Checks `text` and puts it into `config`.
    pub apply: fn(&str, &mut HubConfig) -> Result<(), Refused>,
    /// Puts the section of hub.toml (`file`) into `config`.
    pub reset: fn(&mut HubConfig, file: &HubConfig),
    /// A one-line digest of the section, for the audit's before → after.
    pub summary: fn(&HubConfig) -> String,
}

fn render(
    s: &Section,
    viewer: &Viewer,
    saved: Option<&Saved>,
    text: &str,
    message: Option<(bool, String)>,
) -> String {
    let l = viewer.lang;
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    body.push_str(&html::flash(message.as_ref()));
    let in_force = match saved {
        Some(saved) => match l {
            Lang::Zh => format!(
                "当前生效：管理员保存的版本（{}，{}），优先于 hub.toml。",
                esc(&saved.set_by),
                super::html::time_ms(Some(saved.at_ms))
            ),
            Lang::En => format!(
                "In force: the copy saved by {} at {}, over hub.toml.",
                esc(&saved.set_by),
                super::html::time_ms(Some(saved.at_ms))
            ),
        },
        None => l.t(s.from_file.0, s.from_file.1).to_owned(),
    };
    body.push_str(&format!(
        "<p><b>{in_force}</b></p><p class=\"muted\">{}</p>\
<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<textarea name=\"{}\" rows=\"34\" cols=\"100\" spellcheck=\"false\">{}</textarea><br>\
<button type=\"submit\" name=\"action\" value=\"save\">{}</button> \
<button type=\"submit\" name=\"action\" value=\"reset\">{}</button></form>",
        l.t(s.help.0, s.help.1),
        s.path,
        s.field,
        esc(text),
        l.t("保存并生效", "Save and apply"),
        l.t("恢复为 hub.toml", "Reset to hub.toml"),
    ));
    body
}

async fn page_with(
    s: &Section,
    state: &super::DashState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<(bool, String)>,
    text: Option<&str>,
) -> Response {
    let key = s.key;
    let saved = match read(&state.api, move |r| {
        r.run(|c| settings::get_setting(c, key))
    })
    .await
    {
        Ok(saved) => saved,
        Err(r) => return r,
    };
    let current = (s.current)(&state.api.sup.config());
    viewer.page_with_status(
        status,
        s.path,
        viewer.lang.t(s.title.0, s.title.1).to_owned(),
        None,
        &render(s, viewer, saved.as_ref(), text.unwrap_or(&current), message),
    )
}

/// GET: the section in force, as text to edit.
pub async fn page(s: &Section, state: &super::DashState, viewer: &Viewer) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    page_with(s, state, viewer, StatusCode::OK, None, None).await
}

/// POST: `action=save` checks and stores the text and puts it in force; `action=reset` drops the
/// admin copy and puts hub.toml's section back in force. Bad text: 422 with the reason, nothing
/// changed.
pub async fn save(
    s: &Section,
    state: &super::DashState,
    viewer: &Viewer,
    form: &HashMap<String, String>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if let Err(r) = viewer.check_csrf(field("csrf")) {
        return r;
    }
    let l = viewer.lang;
    let sup = state.api.sup.clone();
    let before = sup.config();
    let mut next = (*before).clone();
    let reset = field("action") == "reset";
    if reset {
        (s.reset)(&mut next, &sup.file_config());
    } else if let Err(e) = (s.apply)(field(s.field), &mut next) {
        let m = match l {
            Lang::Zh => e.zh,
            Lang::En => e.en,
        };
        return page_with(
            s,
            state,
            viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((false, m)),
            Some(field(s.field)),
        )
        .await;
    }
    let by = viewer.user().name.clone();
    let text = (s.current)(&next);
    let (x, y) = ((s.summary)(&before), (s.summary)(&next));
    let summary = if x == y {
        format!("unchanged: {y}")
    } else {
        format!("{x} → {y}")
    };
    let key = s.key;
    let result = write(&state.api, move |tx| {
        if reset {
            settings::clear_setting(tx, key)?;
        } else {
            settings::put_setting(tx, key, &text, &by)?;
        }
        let action = if reset {
            format!("settings.{key}.reset")
        } else {
            format!("settings.{key}")
        };
        crate::store::audit(tx, &by, &action, &format!("settings:{key}"), &summary)?;
        Ok::<_, rusqlite::Error>(())
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => return r,
    }
    let m = match sup.set_config(next) {
        Ok(()) => (
            true,
            l.t("已保存，已生效。", "Saved and in force.").to_owned(),
        ),
        Err(e) => (false, format!("saved, but not in force: {e}")),
    };
    page_with(s, state, viewer, StatusCode::OK, Some(m), None).await
}
