//! Accounts (`/admin/users`, admins only): the users with their role and scope, a form to add one,
//! and disabling (which ends the user's sessions) or enabling. Each change is in the audit log.

use super::accounts::{self, CreateError, NewUser, Role};
use super::html::{self, Lang, esc};
use super::{Viewer, html_response};
use crate::web::{read, write};
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

fn render(
    viewer: &Viewer,
    users: &[accounts::User],
    message: Option<(bool, String)>,
    form: &AddForm,
) -> String {
    let l = viewer.lang;
    let csrf = esc(&viewer.session.csrf);
    let mut body = String::new();
    body.push_str(&html::flash(message.as_ref()));
    body.push_str(&format!(
        "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
        l.t("用户名", "Name"),
        l.t("角色", "Role"),
        l.t("乡镇", "Site"),
        l.t("科室", "Unit"),
        l.t("状态", "Status"),
    ));
    for u in users {
        let (action, label) = if u.disabled {
            ("enable", l.t("启用", "Enable"))
        } else {
            ("disable", l.t("停用", "Disable"))
        };
        let button = if u.id == viewer.user().id {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/admin/users/{}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"action\" value=\"{action}\"><button type=\"submit\">{label}</button></form>",
                u.id
            )
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{button}</td></tr>",
            esc(&u.name),
            l.t(u.role.zh(), u.role.as_str()),
            esc(u.site.as_deref().unwrap_or("—")),
            esc(u.unit.as_deref().unwrap_or("—")),
            if u.disabled {
                format!("<span class=\"bad\">{}</span>", l.t("已停用", "disabled"))
            } else {
                l.t("正常", "active").to_owned()
            }
        ));
    }
    body.push_str("</table>");
    let roles: Vec<(String, String)> = Role::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), format!("{} {}", r.zh(), r.as_str())))
        .collect();
    body.push_str(&format!(
        "<h2>{}</h2><form class=\"filters\" method=\"post\" action=\"/admin/users\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label>{}<input name=\"name\" value=\"{}\" required></label>\
<label>{}<select name=\"role\">{}</select></label>\
<label>{}<input name=\"site\" value=\"{}\"></label><label>{}<input name=\"unit\" value=\"{}\"></label>\
<label>{}<input name=\"password\" type=\"password\" autocomplete=\"new-password\" required></label>\
<button type=\"submit\">{}</button></form><p class=\"muted\">{}</p>",
        l.t("新增账号", "Add an account"),
        l.t("用户名", "Name"),
        esc(&form.name),
        l.t("角色", "Role"),
        html::options(&roles, Some(form.role.as_str())),
        l.t("乡镇（负责人必填）", "Site (heads only, required)"),
        esc(&form.site),
        l.t("科室（可选）", "Unit (optional)"),
        esc(&form.unit),
        l.t("密码（至少 10 位）", "Password (10+ characters)"),
        l.t("添加", "Add"),
        l.t(
            "监察员与管理员可看全部乡镇；负责人只看本乡镇（可限本科室）；运维只看设备页。",
            "Supervisors and admins see every site; a head sees one site (optionally one unit); a technician sees the fleet page only."
        ),
    ));
    body
}

async fn page_with(
    state: &super::DashState,
    viewer: &Viewer,
    status: StatusCode,
    message: Option<(bool, String)>,
    form: &AddForm,
) -> Response {
    let users = match read(&state.api, |r| r.run(accounts::list)).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    viewer.page_with_status(
        status,
        "/admin/users",
        viewer.lang.t("账号管理", "Accounts").to_owned(),
        None,
        &render(viewer, &users, message, form),
    )
}

pub async fn users(State(state): State<super::DashState>, viewer: Viewer) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    page_with(&state, &viewer, StatusCode::OK, None, &AddForm::default()).await
}

#[derive(Deserialize, Default)]
pub struct AddForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    password: String,
}

pub async fn add_user(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Form(mut form): Form<AddForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let Some(role) = Role::parse(&form.role) else {
        let m = format!(
            "role {:?}: {}",
            form.role,
            l.t("请选择角色", "choose a role")
        );
        return page_with(
            &state,
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((false, m)),
            &form,
        )
        .await;
    };
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let new = NewUser {
        name: form.name.trim().to_owned(),
        role,
        site: opt(&form.site),
        unit: opt(&form.unit),
    };
    let password = std::mem::take(&mut form.password);
    let by = viewer.user().name.clone();
    let n = new.clone();
    let result = write(&state.api, move |tx| {
        let id = accounts::create(tx, &n, &password, &by)?;
        let detail = format!(
            "{} {} {}",
            n.role.as_str(),
            n.site.as_deref().unwrap_or(""),
            n.unit.as_deref().unwrap_or("")
        );
        crate::store::audit(
            tx,
            &by,
            "user.add",
            &format!("user:{id}:{}", n.name),
            detail.trim(),
        )?;
        Ok::<_, CreateError>(id)
    })
    .await;
    match result {
        Ok(Ok(_)) => {
            let m = match l {
                Lang::Zh => format!("已添加账号 {}。", new.name),
                Lang::En => format!("Account {} added.", new.name),
            };
            page_with(
                &state,
                &viewer,
                StatusCode::OK,
                Some((true, m)),
                &AddForm::default(),
            )
            .await
        }
        Ok(Err(CreateError::Db(e))) => {
            super::message_page(StatusCode::INTERNAL_SERVER_ERROR, l, &e.to_string())
        }
        Ok(Err(e)) => {
            page_with(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some((false, e.to_string())),
                &form,
            )
            .await
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct ToggleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

pub async fn set_disabled(
    State(state): State<super::DashState>,
    viewer: Viewer,
    Path(id): Path<i64>,
    Form(form): Form<ToggleForm>,
) -> Response {
    if let Err(r) = viewer.require(&[Role::Admin]) {
        return r;
    }
    if let Err(r) = viewer.check_csrf(&form.csrf) {
        return r;
    }
    let l = viewer.lang;
    let disable = match form.action.as_str() {
        "disable" => true,
        "enable" => false,
        other => {
            let m = format!("action {other:?}: disable | enable");
            return page_with(
                &state,
                &viewer,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some((false, m)),
                &AddForm::default(),
            )
            .await;
        }
    };
    if id == viewer.user().id {
        let m = l
            .t(
                "不能停用自己的账号。",
                "You cannot disable your own account.",
            )
            .to_owned();
        return page_with(
            &state,
            &viewer,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some((false, m)),
            &AddForm::default(),
        )
        .await;
    }
    let by = viewer.user().name.clone();
    let result = write(&state.api, move |tx| {
        let found = accounts::set_disabled(tx, id, disable)?;
        if found {
            crate::store::audit(
                tx,
                &by,
                if disable {
                    "user.disable"
                } else {
                    "user.enable"
                },
                &format!("user:{id}"),
                "",
            )?;
        }
        Ok::<_, rusqlite::Error>(found)
    })
    .await;
    match result {
        Ok(Ok(true)) => {
            let m = l.t("已更新。", "Updated.").to_owned();
            page_with(
                &state,
                &viewer,
                StatusCode::OK,
                Some((true, m)),
                &AddForm::default(),
            )
            .await
        }
        Ok(Ok(false)) => viewer.not_found(),
        Ok(Err(e)) => html_response(StatusCode::INTERNAL_SERVER_ERROR, esc(&e.to_string())),
        Err(r) => r,
    }
}
