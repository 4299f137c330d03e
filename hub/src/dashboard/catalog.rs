//! The item catalog (`/admin/items`, admins only): every item with its limits, a form to add one or
//! edit one (checked by the catalog's own rules, [`items::check`]). A change applies to the cases
//! that arrive from then on; each is in the audit log with what changed.

use super::accounts::Role;
use super::html::{self, Lang, esc};
use super::{Viewer, message_page};
use crate::oversight::calendar::DayUnit;
use crate::oversight::cases::Kind;
use crate::store::items::{self, Item};
use crate::web::{read, write};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

/// The item form as submitted (and shown again when refused).
#[derive(Deserialize, Default, Clone)]
pub struct ItemForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    statutory_days: String,
    #[serde(default)]
    promised_days: String,
    #[serde(default)]
    day_unit: String,
    #[serde(default)]
    fees_allowed: Option<String>,
}

impl ItemForm {
    fn of(i: &Item) -> ItemForm {
        ItemForm {
            csrf: String::new(),
            code: i.code.clone(),
            name: i.name.clone(),
            unit: i.unit.clone(),
            kind: items::kind_str(i.kind).into(),
            statutory_days: i.statutory_days.to_string(),
            promised_days: i.promised_days.to_string(),
            day_unit: items::unit_str(i.day_unit).into(),
            fees_allowed: i.fees_allowed.then(|| "1".into()),
        }
    }

    /// The item of the form, or what is wrong with it (in the viewer's language).
    pub fn item(&self, l: Lang) -> Result<Item, String> {
        let days = |v: &str, zh: &str, en: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|d| *d <= 3650)
                .ok_or_else(|| match l {
                    Lang::Zh => format!("{zh}应为 0 到 3650 之间的整数（收到 {v:?}）。"),
                    Lang::En => format!("{en} must be a whole number from 0 to 3650 (got {v:?})."),
                })
        };
        let kind = match self.kind.as_str() {
            "immediate" => Kind::Immediate,
            "promised" => Kind::Promised,
            other => {
                return Err(match l {
                    Lang::Zh => format!("办件类型 {other:?} 无效：请选择即办件或承诺件。"),
                    Lang::En => format!("Kind {other:?}: choose immediate or promised."),
                });
            }
        };
        let day_unit = match self.day_unit.as_str() {
            "working" | "" => DayUnit::Working,
            "natural" => DayUnit::Natural,
            other => {
                return Err(match l {
                    Lang::Zh => format!("计时单位 {other:?} 无效：请选择工作日或自然日。"),
                    Lang::En => format!("Day unit {other:?}: choose working or natural."),
                });
            }
        };
        let item = Item {
            code: self.code.trim().to_owned(),
            name: self.name.trim().to_owned(),
            unit: self.unit.trim().to_owned(),
            kind,
            statutory_days: days(&self.statutory_days, "法定时限", "Statutory days")?,
            promised_days: days(&self.promised_days, "承诺时限", "Promised days")?,
            day_unit,
            fees_allowed: self.fees_allowed.is_some(),
        };
        if item.unit.is_empty() {
            return Err(l
                .t("请填写承办科室。", "Give the unit that handles the item.")
                .into());
        }
        // The catalog's own rules, as for an imported file.
        items::check(std::slice::from_ref(&item)).map_err(|e| {
            format!(
                "{}{e}",
                l.t("事项不符合目录规则：", "The item breaks a catalog rule: ")
            )
        })?;
        Ok(item)
    }
}

/// What changed between two versions of an item, for the audit log ("field: before → after").
pub fn changes(before: Option<&Item>, after: &Item) -> String {
    let fields = |i: &Item| {
        vec![
            ("name", i.name.clone()),
            ("unit", i.unit.clone()),
            ("kind", items::kind_str(i.kind).to_owned()),
            ("statutory_days", i.statutory_days.to_string()),
            ("promised_days", i.promised_days.to_string()),
            ("day_unit", items::unit_str(i.day_unit).to_owned()),
            ("fees_allowed", i.fees_allowed.to_string()),
        ]
    };
    match before {
        None => fields(after)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; "),
        Some(b) => {
            let diff: Vec<String> = fields(b)
                .into_iter()
                .zip(fields(after))
                .filter(|(x, y)| x.1 != y.1)
                .map(|((k, x), (_, y))| format!("{k}: {x} → {y}"))
                .collect();
            if diff.is_empty() {
                "unchanged".into()
            } else {
                diff.join("; ")
            }
        }
    }
}

fn render(
    viewer: &Viewer,
    all: &[Item],
    message: Option<(bool, String)>,
    form: &ItemForm,
) -> String {
    let l = viewer.lang;
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    body.push_str(&html::flash(message.as_ref()));
    body.push_str(&format!(
        "<p class=\"muted\">{}</p><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th>{}</th><th>{}</th><th></th></tr>",
        l.t(
            "修改只对此后受理的办件生效；已在办的办件按受理时的目录计时。",
            "A change applies to cases accepted from then on; cases already open keep the limits they were accepted with."
        ),
        l.t("编码", "Code"),
        l.t("名称", "Name"),
        l.t("科室", "Unit"),
        l.t("类型", "Kind"),
        l.t("法定时限", "Statutory"),
        l.t("承诺时限", "Promised"),
        l.t("计时", "Days"),
        l.t("收费", "Fees"),
    ));
    for i in all {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td><a href=\"/admin/items?edit={}\">{}</a></td></tr>",
            esc(&i.code),
            esc(&i.name),
            esc(&i.unit),
            kind_name(l, i.kind),
            i.statutory_days,
            i.promised_days,
            unit_name(l, i.day_unit),
            if i.fees_allowed { l.t("可收费", "allowed") } else { l.t("免费", "free") },
            html::url(&i.code),
            l.t("编辑", "Edit"),
        ));
    }
    body.push_str("</table>");
    let kinds = [
        (
            "immediate".to_owned(),
            kind_name(l, Kind::Immediate).to_owned(),
        ),
        (
            "promised".to_owned(),
            kind_name(l, Kind::Promised).to_owned(),
        ),
    ];
    let units = [
        (
            "working".to_owned(),
            unit_name(l, DayUnit::Working).to_owned(),
        ),
        (
            "natural".to_owned(),
            unit_name(l, DayUnit::Natural).to_owned(),
        ),
    ];
    body.push_str(&format!(
        "<h2>{}</h2><form class=\"filters\" method=\"post\" action=\"/admin/items\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>{}<input name=\"code\" value=\"{}\" required></label>\
<label>{}<input name=\"name\" value=\"{}\" required></label>\
<label>{}<input name=\"unit\" value=\"{}\" required></label>\
<label>{}<select name=\"kind\">{}</select></label>\
<label>{}<input name=\"statutory_days\" value=\"{}\" inputmode=\"numeric\" size=\"5\"></label>\
<label>{}<input name=\"promised_days\" value=\"{}\" inputmode=\"numeric\" size=\"5\"></label>\
<label>{}<select name=\"day_unit\">{}</select></label>\
<label>{}<input type=\"checkbox\" name=\"fees_allowed\" value=\"1\"{}></label>\
<button type=\"submit\">{}</button></form><p class=\"muted\">{}</p>",
        l.t("新增或修改事项", "Add or edit an item"),
        l.t("编码", "Code"),
        esc(&form.code),
        l.t("名称", "Name"),
        esc(&form.name),
        l.t("承办科室", "Unit"),
        esc(&form.unit),
        l.t("类型", "Kind"),
        html::options(&kinds, Some(form.kind.as_str())),
        l.t("法定时限（天）", "Statutory days"),
        esc(&form.statutory_days),
        l.t("承诺时限（天）", "Promised days"),
        esc(&form.promised_days),
        l.t("计时单位", "Day unit"),
        html::options(&units, Some(form.day_unit.as_str())),
        l.t("允许收费", "Fees allowed"),
        if form.fees_allowed.is_some() { " checked" } else { "" },
        l.t("保存", "Save"),
        l.t(
            "编码已存在则修改该事项，否则新增。承诺件须有承诺时限，且承诺时限不得超过法定时限。",
            "An existing code edits that item, a new one adds it. A promised item needs promised days, at most the statutory days."
        ),
    ));
    body
}

fn kind_name(l: Lang, k: Kind) -> &'static str {
    match k {
        Kind::Immediate => l.t("即办件", "immediate"),
        Kind::Promised => l.t("承诺件", "promised"),
    }
}

fn unit_name(l: Lang, u: DayUnit) -> &'static str {
    match u {
        DayUnit::Working => l.t("工作日", "working days"),
        DayUnit::Natural => l.t("自然日", "natural days"),
    }
}

async fn page_with(
    state: &super::DashState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<(bool, String)>,
    form: &ItemForm,
) -> Response {
    let all = match read(&state.api, |r| r.run(items::list)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    viewer.page_with_status(
        status,
        "/admin/items",
        viewer.lang.t("事项目录", "Item catalog").to_owned(),
        None,
        &render(viewer, &all, message, form),
    )
}

#[derive(Deserialize)]
pub struct EditQuery {
    edit: Option<String>,
}

pub async fn page(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Query(q): Query<EditQuery>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    let mut form = ItemForm {
        kind: "promised".into(),
        day_unit: "working".into(),
        ..ItemForm::default()
    };
    if let Some(code) = q.edit.filter(|c| !c.is_empty()) {
        match read(&state.api, move |r| r.run(|c| items::get(c, &code))).await {
            Ok(Some(i)) => form = ItemForm::of(&i),
            Ok(None) => return viewer.not_found(),
            Err(r) => return r,
        }
    }
    page_with(&state, &viewer, StatusCode::OK, None, &form).await
}

pub async fn save(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(form): Form<ItemForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let item = match form.item(l) {
        Ok(i) => i,
        Err(m) => {
            return page_with(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some((false, m)),
                &form,
            )
            .await;
        }
    };
    let by = viewer.user().name.clone();
    let it = item.clone();
    let result = write(&state.api, move |tx| {
        let before = items::get(tx, &it.code)?;
        items::upsert(tx, std::slice::from_ref(&it))?;
        crate::store::audit(
            tx,
            &by,
            if before.is_some() {
                "item.edit"
            } else {
                "item.add"
            },
            &format!("item:{}", it.code),
            &changes(before.as_ref(), &it),
        )?;
        Ok::<_, rusqlite::Error>(before.is_some())
    })
    .await;
    match result {
        Ok(Ok(edited)) => {
            let m = match (l, edited) {
                (Lang::Zh, true) => format!("已修改事项 {} {}。", item.code, item.name),
                (Lang::Zh, false) => format!("已新增事项 {} {}。", item.code, item.name),
                (Lang::En, true) => format!("Item {} {} saved.", item.code, item.name),
                (Lang::En, false) => format!("Item {} {} added.", item.code, item.name),
            };
            page_with(
                &state,
                &viewer,
                StatusCode::OK,
                Some((true, m)),
                &ItemForm::of(&item),
            )
            .await
        }
        Ok(Err(e)) => message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string()),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ItemForm {
        ItemForm {
            csrf: String::new(),
            code: "MZ-001".into(),
            name: "老年优待证办理".into(),
            unit: "民政办".into(),
            kind: "promised".into(),
            statutory_days: "10".into(),
            promised_days: "5".into(),
            day_unit: "working".into(),
            fees_allowed: None,
        }
    }

    #[test]
    fn a_good_form_is_an_item() {
        let i = form().item(Lang::Zh).unwrap();
        assert_eq!(i.promised_days, 5);
        assert!(!i.fees_allowed);
        assert_eq!(i.kind, Kind::Promised);
    }

    #[test]
    fn bad_forms_say_what_is_wrong_in_the_viewers_language() {
        let f = ItemForm {
            promised_days: "12".into(),
            ..form()
        };
        let e = f.item(Lang::Zh).unwrap_err();
        assert!(
            e.contains("事项不符合目录规则") && e.contains("承诺时限不得超过法定时限"),
            "{e}"
        );
        let f = ItemForm {
            statutory_days: "ten".into(),
            ..form()
        };
        assert!(f.item(Lang::Zh).unwrap_err().contains("法定时限应为"));
        assert!(
            f.item(Lang::En)
                .unwrap_err()
                .contains("Statutory days must be")
        );
        let f = ItemForm {
            kind: "later".into(),
            ..form()
        };
        assert!(f.item(Lang::Zh).unwrap_err().contains("即办件或承诺件"));
        let f = ItemForm {
            promised_days: "0".into(),
            ..form()
        };
        assert!(f.item(Lang::En).unwrap_err().contains("no promised_days"));
        let f = ItemForm {
            code: " ".into(),
            ..form()
        };
        assert!(f.item(Lang::En).unwrap_err().contains("code and a name"));
    }

    #[test]
    fn the_audit_says_what_changed() {
        let a = form().item(Lang::Zh).unwrap();
        let b = Item {
            promised_days: 3,
            fees_allowed: true,
            ..a.clone()
        };
        assert_eq!(
            changes(Some(&a), &b),
            "promised_days: 5 → 3; fees_allowed: false → true"
        );
        assert!(changes(None, &a).starts_with("name=老年优待证办理; unit=民政办"));
    }
}
