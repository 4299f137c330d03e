//! The supervisors' dashboard over real HTTP against a real hub: sign-in (wrong password, throttling
//! per name and per address, the sign-in form's own token), sessions and sign-out, CSRF on every
//! form, every page for a supervisor, roles, and the scoped-user leak test — a head of township A
//! never sees township B's case numbers, staff or boxes on any page or by a direct URL.

mod dashboard_fixture;

use dashboard_fixture::*;
use sunlight_tests::scratch;

/// Every page a supervisor has, with a text each must show.
fn pages(letter_a: i64) -> Vec<(String, &'static str)> {
    vec![
        ("/".into(), "总览"),
        ("/warnings".into(), "预警看板"),
        (format!("/warnings?site={A}&level=yellow_card"), "SS-0001"),
        ("/cases?view=todo".into(), "待办"),
        ("/cases?view=doing".into(), "SS-0003"),
        ("/cases?view=done".into(), "SS-0004"),
        ("/cases?view=done&q=SS-00".into(), "SS-0004"),
        (format!("/cases/{A}/SS-0001"), "黄牌"),
        (format!("/letters/{letter_a}"), "监察建议书"),
        (format!("/attendance?site={A}&day={TODAY}"), "空岗"),
        (
            format!("/attendance/month?site={A}&month=2025-11"),
            "巡查签到",
        ),
        ("/fleet".into(), "box-shangshi"),
        (
            format!("/attendance/staff/{A}/0451?month=2025-11"),
            "迟到 6 分",
        ),
        ("/attendance/makeups".into(), "林业站打卡机故障"),
        ("/wall".into(), "win-mz-1"),
        (format!("/wall/{A}/win-mz-1?date={TODAY}"), "09:30:00"),
    ]
}

/// The id of the letter issued for a case (read from the hub's store).
fn letter_id(hub: &sunlight_tests::Hub, case_no: &str) -> i64 {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    conn.query_row(
        "SELECT id FROM letters WHERE case_no = ?1",
        [case_no],
        |r| r.get(0),
    )
    .expect("a letter for the case")
}

fn makeup_id(hub: &sunlight_tests::Hub, staff_id: &str) -> i64 {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    conn.query_row(
        "SELECT id FROM makeups WHERE staff_id = ?1",
        [staff_id],
        |r| r.get(0),
    )
    .expect("a make-up request")
}

fn makeup_status(hub: &sunlight_tests::Hub, staff_id: &str) -> String {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    conn.query_row(
        "SELECT status FROM makeups WHERE staff_id = ?1",
        [staff_id],
        |r| r.get(0),
    )
    .expect("a make-up request")
}

fn audit_actions(hub: &sunlight_tests::Hub) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    let mut stmt = conn
        .prepare("SELECT who, action, target FROM audit ORDER BY id")
        .expect("audit");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("audit")
        .collect::<Result<_, _>>()
        .expect("audit rows")
}

#[test]
fn sign_in_is_required_throttled_and_protected() {
    let dir = scratch("dashboard-signin");
    let hub = hub_with_data(&dir);

    // No session: every page sends the browser to the sign-in form, and back afterwards.
    let mut b = Browser::new(&hub);
    for path in ["/", "/warnings?level=red_card", "/fleet", "/admin/users"] {
        let r = b.get(path);
        assert_eq!(r.status, 303, "{path}");
        assert!(
            r.location().is_some_and(|l| l.starts_with("/login?next=")),
            "{path}: {:?}",
            r.location()
        );
    }
    // A made-up session cookie is no session.
    b.cookies.insert("sl_session".into(), "ab".repeat(32));
    assert_eq!(b.get("/").status, 303);
    b.cookies.clear();

    // A wrong password: an error, and no session cookie.
    let r = b.login("jiancha", "wrong-password-1");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("用户名或密码不正确"), "{}", r.body);
    assert!(
        !r.set_cookies().iter().any(|c| c.starts_with("sl_session=")),
        "{:?}",
        r.set_cookies()
    );
    assert!(!b.cookies.contains_key("sl_session"));
    // An unknown name gets the very same answer.
    let r = b.login("nobody", "wrong-password-1");
    assert_eq!(r.status, 401);

    // The sign-in form's token: without it (or with another), 403 and no session.
    let mut other = Browser::new(&hub);
    let r = other.post(
        "/login",
        &[("name", "jiancha"), ("password", PASSWORD), ("csrf", "x")],
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!other.cookies.contains_key("sl_session"));

    // Five wrong passwords for a name from one address block it there, even with the right one.
    let mut attacker = Browser::new(&hub);
    attacker.extra = vec![("x-forwarded-for".into(), "203.0.113.7".into())];
    for i in 0..5 {
        let r = attacker.login("locked", &format!("guess-number-{i}"));
        assert_eq!(r.status, 401, "guess {i}");
    }
    let r = attacker.login("locked", PASSWORD);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    assert!(r.body.contains("登录失败次数过多"), "{}", r.body);
    assert!(!attacker.cookies.contains_key("sl_session"));
    let mut elsewhere = Browser::new(&hub);
    elsewhere.extra = vec![("x-forwarded-for".into(), "198.51.100.1".into())];
    assert_eq!(
        elsewhere.login("locked", PASSWORD).status,
        303,
        "a stranger's guesses from another address do not lock the account's owner out"
    );
    // Another name from the same address still signs in (the address has used 5 of its 20).
    assert_eq!(attacker.login("jiancha", PASSWORD).status, 303);

    // An address trying many names is blocked too.
    let mut sprayer = Browser::new(&hub);
    sprayer.extra = vec![("x-forwarded-for".into(), "203.0.113.99".into())];
    for i in 0..20 {
        assert_eq!(
            sprayer.login(&format!("user{i}"), "password-spray").status,
            401,
            "try {i}"
        );
    }
    assert_eq!(sprayer.login("admin", PASSWORD).status, 429);

    // A good sign-in: a session cookie that scripts cannot read and other sites do not send.
    let mut sup = Browser::new(&hub);
    let r = sup.login("jiancha", PASSWORD);
    assert_eq!((r.status, r.location()), (303, Some("/")));
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("sl_session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert_eq!(sup.cookies["sl_session"].len(), 64);
    assert_eq!(sup.get("/").status, 200);
    // Behind a TLS proxy the cookie is Secure.
    let mut tls = Browser::new(&hub);
    tls.extra = vec![("x-forwarded-proto".into(), "https".into())];
    let r = tls.login("jiancha", PASSWORD);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("sl_session=") && c.contains("; Secure"))
    );

    // Sign-out is a form: without the session's token it is refused and the session lives on.
    let page = sup.get("/");
    let token = page.csrf().expect("the page has the sign-out form");
    let r = sup.post("/logout", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    let r = sup.post("/logout", &[("csrf", &"0".repeat(64))]);
    assert_eq!(r.status, 403);
    assert_eq!(sup.get("/").status, 200, "still signed in");
    let stolen = sup.cookies["sl_session"].clone();
    let r = sup.post("/logout", &[("csrf", &token)]);
    assert_eq!((r.status, r.location()), (303, Some("/login")));
    // The session is gone at the hub, not only in this browser.
    let mut replay = Browser::new(&hub);
    replay.cookies.insert("sl_session".into(), stolen);
    assert_eq!(replay.get("/").status, 303);

    // Pages carry no scripts and forbid framing and caching.
    let mut s = Browser::signed_in(&hub, "jiancha");
    let r = s.get("/warnings");
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        r.headers
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    assert!(!r.body.contains("<script"));
    // Sign-ins are in the audit log.
    assert!(
        audit_actions(&hub)
            .iter()
            .any(|(who, action, _)| who == "jiancha" && action == "session.start")
    );
}

#[test]
fn a_supervisor_sees_every_page_of_both_townships() {
    let dir = scratch("dashboard-pages");
    let hub = hub_with_data(&dir);
    let letter_a = letter_id(&hub, "SS-0002");
    let letter_b = letter_id(&hub, "LS-SECRET-01");
    let mut b = Browser::signed_in(&hub, "jiancha");
    for (path, text) in pages(letter_a) {
        let r = b.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            r.body.contains(text),
            "{path} should show {text:?}:\n{}",
            r.body
        );
    }
    // Both townships, their boxes and the ladder, on the overview.
    let overview = b.get("/").body;
    for text in [
        A,
        B,
        "box-shangshi",
        "box-lishan",
        "在线",
        "黄牌",
        "监察建议书",
    ] {
        assert!(
            overview.contains(text),
            "overview lacks {text:?}:\n{overview}"
        );
    }
    // W2 (林业站) nobody punched in at this morning: vacant.
    assert!(overview.contains("林业站 W2 08:30–12:00"), "{overview}");
    // The board, most serious first, with countdowns and the letters linked.
    let board = b.get("/warnings").body;
    let (letter, card, blue) = (
        board.find("SS-0002").expect("letter case"),
        board.find("SS-0001").expect("card case"),
        board.find("SS-0003").expect("blue case"),
    );
    assert!(letter < card && card < blue, "ordered by level:\n{board}");
    assert!(board.contains("LS-SECRET-01"));
    assert!(
        board.contains(&format!("/letters/{letter_a}"))
            && board.contains(&format!("/letters/{letter_b}"))
    );
    assert!(
        board.contains("超期 1 个工作日"),
        "SS-0001 is one working day overdue:\n{board}"
    );
    assert!(
        board.contains("剩 10 个工作日"),
        "SS-0003 has ten days left:\n{board}"
    );
    assert!(board.contains("http-equiv=\"refresh\" content=\"30\""));
    // Filters narrow it down.
    let only_b = b.get(&format!("/warnings?site={B}")).body;
    assert!(only_b.contains("LS-SECRET-01") && !only_b.contains("SS-0001"));
    let only_forestry = b.get("/warnings?unit=林业站").body;
    assert!(only_forestry.contains("SS-0002") && !only_forestry.contains("SS-0001"));
    // (The letters listed under the board are not filtered by level.)
    let only_cards = b.get("/warnings?level=yellow_card").body;
    let table = only_cards.split("<h2>").next().unwrap_or("");
    assert!(
        table.contains("SS-0001") && !table.contains("SS-0002"),
        "{only_cards}"
    );
    // A case's timeline: its stages at their own times, its warnings.
    let case = b.get(&format!("/cases/{A}/SS-0003")).body;
    assert!(
        case.contains("受理")
            && case.contains("承办")
            && case.contains("2025-11-04T10:00:00+08:00"),
        "{case}"
    );
    assert_eq!(b.get(&format!("/cases/{A}/NO-SUCH")).status, 404);
    assert_eq!(b.get("/letters/999999").status, 404);
    // The attendance board: punches with the box's clock offset, late, absent, vacant.
    let att = b.get(&format!("/attendance?site={A}&day={TODAY}")).body;
    for text in ["李明", "迟到 6 分", "旷工", "空岗", "08:36:00", "+4.0 s"] {
        assert!(att.contains(text), "attendance lacks {text:?}:\n{att}");
    }
    // Bad input: a clear message.
    let r = b.get(&format!("/attendance?site={A}&day=2025-13-45"));
    assert_eq!(r.status, 422);
    assert!(r.body.contains("YYYY-MM-DD"), "{}", r.body);
    assert_eq!(
        b.get(&format!("/attendance/month?site={A}&month=11-2025"))
            .status,
        422
    );
    // The fleet: health figures and the alarm.
    let fleet = b.get("/fleet").body;
    for text in [
        "box-lishan",
        "13%",
        "800 MB",
        "tamper",
        "a forged batch from box-lishan",
        "17",
    ] {
        assert!(fleet.contains(text), "fleet lacks {text:?}:\n{fleet}");
    }
    // English on request.
    let r = b.get("/lang?to=en&back=%2Fwarnings");
    assert_eq!((r.status, r.location()), (303, Some("/warnings")));
    let en = b.get("/warnings").body;
    assert!(
        en.contains("Warnings board") && en.contains("yellow card") && en.contains("lang=\"en\""),
        "{en}"
    );
    // The language switch goes back only to this site.
    assert_eq!(
        b.get("/lang?to=zh&back=%2F%2Fevil.example%2F").location(),
        Some("/")
    );
    // A supervisor has no accounts page.
    assert_eq!(b.get("/admin/users").status, 403);
}

/// Fails with the first B-only string found on a page of a user scoped to A.
fn assert_no_leak(who: &str, path: &str, body: &str, forbidden: &[&str]) {
    for s in forbidden {
        assert!(!body.contains(s), "{who} sees {s:?} on {path}:\n{body}");
    }
}

#[test]
fn a_head_never_sees_another_township() {
    let dir = scratch("dashboard-scope");
    let hub = hub_with_data(&dir);
    let letter_a = letter_id(&hub, "SS-0002");
    let letter_b = letter_id(&hub, "LS-SECRET-01");
    let mut head = Browser::signed_in(&hub, "shangshi");
    for (path, text) in pages(letter_a) {
        let r = head.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(r.body.contains(text), "{path} should show {text:?}");
        assert_no_leak("the head of A", &path, &r.body, &B_ONLY);
    }
    for path in [
        "/".to_owned(),
        "/warnings?level=supervision_letter".into(),
        "/cases?view=done&q=LS".into(),
        "/attendance".into(),
        "/attendance/month".into(),
        "/lang?to=en&back=%2F".into(),
        "/".into(),
        "/fleet".into(),
    ] {
        let r = head.get(&path);
        assert_no_leak("the head of A", &path, &r.body, &B_ONLY);
    }
    // Direct URLs into B: refused, and nothing of B in the answer.
    for (path, status) in [
        (format!("/warnings?site={B}"), 403),
        (format!("/cases?view=done&site={B}"), 403),
        (format!("/cases/{B}/LS-SECRET-01"), 404),
        (format!("/cases/{B}/LS-SECRET-02"), 404),
        (format!("/letters/{letter_b}"), 404),
        (format!("/attendance?site={B}&day={TODAY}"), 403),
        (format!("/attendance/month?site={B}&month=2025-11"), 403),
        ("/admin/users".into(), 403),
        (format!("/attendance/staff/{B}/L611"), 404),
        (format!("/attendance/makeups?site={B}"), 403),
    ] {
        let r = head.get(&path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert_no_leak("the head of A", &path, &r.body, &B_ONLY);
    }
    // Deciding B's make-up request, even with a valid token: as if it did not exist.
    let token = head.get("/").csrf().expect("token");
    let b_makeup = makeup_id(&hub, "L611");
    let r = head.post(
        &format!("/attendance/makeups/{b_makeup}"),
        &[("csrf", &token), ("decision", "approve")],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_no_leak(
        "the head of A",
        "a decision on B's make-up",
        &r.body,
        &B_ONLY,
    );
    assert_eq!(makeup_status(&hub, "L611"), "pending");
    // The head's own township is all there.
    let board = head.get("/warnings").body;
    assert!(board.contains("SS-0001") && board.contains("SS-0002"));

    // A unit chief of A's 民政办 sees neither B nor A's 林业站.
    let mut chief = Browser::signed_in(&hub, "shangshi-mz");
    let mut forbidden = B_ONLY.to_vec();
    forbidden.extend(A_FORESTRY_ONLY);
    for path in [
        "/".to_owned(),
        "/warnings".into(),
        "/cases?view=todo".into(),
        "/cases?view=doing".into(),
        "/cases?view=done".into(),
        format!("/attendance?site={A}&day={TODAY}"),
        format!("/attendance/month?site={A}&month=2025-11"),
        "/fleet".into(),
    ] {
        let r = chief.get(&path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_no_leak("the 民政办 chief of A", &path, &r.body, &forbidden);
    }
    assert!(chief.get("/warnings").body.contains("SS-0001"));
    let makeups = chief.get("/attendance/makeups");
    assert_no_leak(
        "the 民政办 chief of A",
        "/attendance/makeups",
        &makeups.body,
        &forbidden,
    );
    assert_eq!(
        chief.get(&format!("/attendance/staff/{A}/0454")).status,
        404
    );
    let token = chief.get("/").csrf().expect("token");
    let forestry = makeup_id(&hub, "0454");
    let r = chief.post(
        &format!("/attendance/makeups/{forestry}"),
        &[("csrf", &token), ("decision", "approve")],
    );
    assert_eq!(r.status, 404);
    assert_eq!(makeup_status(&hub, "0454"), "pending");
    assert_eq!(chief.get(&format!("/cases/{A}/SS-0002")).status, 404);
    assert_eq!(chief.get(&format!("/letters/{letter_a}")).status, 404);
    assert_eq!(chief.get("/warnings?unit=林业站").status, 403);
}

#[test]
fn roles_accounts_and_the_audit_log() {
    let dir = scratch("dashboard-admin");
    let hub = hub_with_data(&dir);

    // The CLI refuses bad accounts with a reason.
    let (ok, out) = add_user(&hub, "nosite", "head", None, None, PASSWORD);
    assert!(!ok && out.contains("--site"), "{out}");
    let (ok, out) = add_user(&hub, "short", "supervisor", None, None, "short");
    assert!(!ok && out.contains("at least 10"), "{out}");
    let (ok, out) = add_user(&hub, "jiancha", "supervisor", None, None, PASSWORD);
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = add_user(&hub, "x", "boss", None, None, PASSWORD);
    assert!(
        !ok && out.contains("supervisor, head, technician or admin"),
        "{out}"
    );

    // A technician sees the fleet, and nothing else.
    let mut tech = Browser::signed_in(&hub, "yunwei");
    assert_eq!(tech.get("/").location(), Some("/fleet"));
    let fleet = tech.get("/fleet");
    assert_eq!(fleet.status, 200);
    assert!(fleet.body.contains("box-shangshi") && fleet.body.contains("box-lishan"));
    for path in ["/warnings", "/cases", "/attendance", "/admin/users"] {
        assert_eq!(tech.get(path).status, 403, "{path}");
    }

    // The admin adds an account through the form; without the token nothing happens.
    let mut admin = Browser::signed_in(&hub, "admin");
    let page = admin.get("/admin/users");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("shangshi-mz") && page.body.contains("民政办"));
    let token = page.csrf().expect("token");
    let fields = |csrf: &'static str| {
        vec![
            ("csrf", csrf),
            ("name", "lishan"),
            ("role", "head"),
            ("site", B),
            ("unit", ""),
            ("password", "another-long-password"),
        ]
    };
    let r = admin.post("/admin/users", &fields(""));
    assert_eq!(r.status, 403, "{}", r.body);
    let none: Vec<(String, String, String)> = audit_actions(&hub)
        .into_iter()
        .filter(|a| a.1 == "user.add" && a.2.ends_with(":lishan"))
        .collect();
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(
        Browser::new(&hub)
            .login("lishan", "another-long-password")
            .status,
        401
    );
    // With the token: added, audited, and the new head sees B only.
    let token: &'static str = Box::leak(token.into_boxed_str());
    let r = admin.post("/admin/users", &fields(token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已添加账号 lishan"), "{}", r.body);
    let mut lishan = Browser::new(&hub);
    assert_eq!(lishan.login("lishan", "another-long-password").status, 303);
    let board = lishan.get("/warnings").body;
    assert!(board.contains("LS-SECRET-01") && !board.contains("SS-0001"));
    // Bad form input: a message, nothing added.
    let r = admin.post(
        "/admin/users",
        &[
            ("csrf", token),
            ("name", "bad name"),
            ("role", "head"),
            ("site", A),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 422);
    assert!(r.body.contains("spaces"), "{}", r.body);
    // A head cannot use the admin form even with a valid token of their own.
    let mut head = Browser::signed_in(&hub, "shangshi");
    let head_token = head.get("/").csrf().expect("token");
    let r = head.post(
        "/admin/users",
        &[
            ("csrf", &head_token),
            ("name", "sneaky"),
            ("role", "admin"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 403);
    // The head approves a make-up punch of their township: refused without the token, then done,
    // audited, and on the board as a punch.
    let makeup = makeup_id(&hub, "0454");
    let path = format!("/attendance/makeups/{makeup}");
    let r = head.post(&path, &[("decision", "approve"), ("note", "属实")]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(makeup_status(&hub, "0454"), "pending");
    let r = head.post(&path, &[("csrf", &head_token), ("decision", "maybe")]);
    assert_eq!(r.status, 422);
    let r = head.post(
        &path,
        &[
            ("csrf", &head_token),
            ("decision", "approve"),
            ("note", "属实"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("已批准"), "{}", r.body);
    assert_eq!(makeup_status(&hub, "0454"), "approved");
    let r = head.post(&path, &[("csrf", &head_token), ("decision", "refuse")]);
    assert_eq!(r.status, 409, "a decided request stays decided: {}", r.body);
    let board = head.get(&format!("/attendance?site={A}&day={TODAY}")).body;
    assert!(board.contains("08:30:00（补卡）"), "{board}");
    // Disabling a user ends their sessions at once.
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    let id: i64 = conn
        .query_row(
            "SELECT id FROM dashboard_users WHERE name = 'lishan'",
            [],
            |r| r.get(0),
        )
        .expect("id");
    let r = admin.post(
        &format!("/admin/users/{id}"),
        &[("csrf", token), ("action", "disable")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(lishan.get("/warnings").status, 303);
    assert_eq!(
        Browser::new(&hub)
            .login("lishan", "another-long-password")
            .status,
        401
    );
    // Every admin change is in the audit log, with who made it.
    let audit = audit_actions(&hub);
    assert!(
        audit_actions(&hub).iter().any(|a| a.0 == "shangshi"
            && a.1 == "makeup.approved"
            && a.2 == format!("makeup:{makeup}")),
        "the approval is audited: {:?}",
        audit_actions(&hub)
    );
    for (who, action) in [("admin", "user.add"), ("admin", "user.disable")] {
        assert!(
            audit
                .iter()
                .any(|a| a.0 == who && a.1 == action && a.2.contains(&id.to_string())),
            "{who} {action} missing from {audit:?}"
        );
    }
    // The CLI's own additions are there too.
    assert!(
        audit
            .iter()
            .any(|a| a.1 == "user.add" && a.2.ends_with(":jiancha"))
    );
    // Passwords are stored as argon2id hashes only.
    let hash: String = conn
        .query_row(
            "SELECT password_hash FROM dashboard_users WHERE name = 'lishan'",
            [],
            |r| r.get(0),
        )
        .expect("hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains("another-long-password"));
}

/// A client of the JSON API with a token of `name` (made with `sunlight-hub user token`).
fn api_client(hub: &sunlight_tests::Hub, name: &str) -> sunlight_tests::http::Client {
    let c = sunlight_tests::http::Client::new();
    c.set_bearer(&hub.make_api_token(name, "unused", None));
    c
}

#[test]
fn the_json_api_needs_an_account_and_follows_its_role() {
    let dir = scratch("dashboard-api");
    let hub = hub_with_data(&dir);
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", hub.http);
    let nobody = sunlight_tests::http::Client::new();

    // Without an account: 401 saying how to get in; nothing of the data.
    for path in [
        "/api/v1/cases",
        "/api/v1/events?kind=punch",
        "/api/v1/devices",
        "/api/v1/attendance/board",
        "/api/v1/cameras",
    ] {
        let (status, body) = nobody.get_text(&url(path)).expect("GET");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("sunlight-hub user token"), "{body}");
        assert_no_leak("a stranger", path, &body, &B_ONLY);
    }
    let sha_b = picture_of(&hub, "LS-CAM-SECRET");
    assert_eq!(
        nobody
            .get_text(&url(&format!("/api/v1/blobs/{sha_b}")))
            .expect("GET")
            .0,
        401
    );
    let (status, _) = nobody
        .post_json(&url("/api/v1/roster/push"), &serde_json::json!({"site": A}))
        .expect("POST");
    assert_eq!(status, 401);
    // What boxes and monitors call stays open: the handlers answer for themselves.
    assert_eq!(nobody.get_text(&url("/healthz")).expect("GET").0, 200);
    assert_eq!(nobody.get_text(&url("/metrics")).expect("GET").0, 200);
    // The full integrity check runs on its own at start (and daily), never per /healthz request.
    sunlight_tests::wait_for(
        std::time::Duration::from_secs(20),
        "the integrity check on /metrics",
        || {
            let (_, text) = nobody.get_text(&url("/metrics"))?;
            text.contains("sunlight_hub_store_integrity_ok 1")
                .then_some(())
        },
    );
    let (status, body) = nobody
        .post_bytes(&url("/api/v1/enroll"), b"{}".to_vec())
        .expect("POST enroll");
    assert_ne!(status, 200);
    assert!(
        !body.contains("user token"),
        "enrollment is not behind sign-in: {body}"
    );
    let bogus = sunlight_tests::http::Client::new();
    bogus.set_bearer(&format!("slt_{}", "0".repeat(64)));
    let (status, body) = bogus.get_text(&url("/api/v1/cases")).expect("GET");
    assert_eq!(status, 401, "{body}");

    // A supervisor reads everything; a technician the fleet only; a head no county-wide query.
    let supervisor = api_client(&hub, "jiancha");
    for path in [
        "/api/v1/cases",
        "/api/v1/events?kind=punch",
        "/api/v1/devices",
        "/api/v1/cameras",
    ] {
        assert_eq!(
            supervisor.get_text(&url(path)).expect("GET").0,
            200,
            "{path}"
        );
    }
    let tech = api_client(&hub, "yunwei");
    for (path, status) in [
        ("/api/v1/devices", 200),
        ("/api/v1/alarms", 200),
        ("/api/v1/cameras", 200),
        ("/api/v1/cases", 403),
        ("/api/v1/events?kind=punch", 403),
        ("/api/v1/attendance/board", 403),
    ] {
        assert_eq!(
            tech.get_text(&url(path)).expect("GET").0,
            status,
            "technician {path}"
        );
    }
    let (status, _) = tech
        .post_json(&url("/api/v1/roster/push"), &serde_json::json!({"site": A}))
        .expect("POST");
    assert_eq!(status, 403);
    let head = api_client(&hub, "shangshi");
    for path in [
        "/api/v1/cases",
        "/api/v1/devices",
        "/api/v1/attendance/board",
        "/api/v1/cameras",
    ] {
        let (status, body) = head.get_text(&url(path)).expect("GET");
        assert_eq!(status, 403, "head {path}: {body}");
        assert_no_leak("the head of A", path, &body, &B_ONLY);
    }
    // A head sees their own site's pictures, and another site's as if they did not exist.
    let sha_a = picture_of(&hub, "win-mz-1");
    let (status, ctype, _) = head
        .get_full(&url(&format!("/api/v1/blobs/{sha_a}?thumb=1")))
        .expect("GET");
    assert_eq!((status, ctype.as_str()), (200, "image/jpeg"));
    assert_eq!(
        head.get_text(&url(&format!("/api/v1/blobs/{sha_b}")))
            .expect("GET")
            .0,
        404
    );

    // A revoked token stops working at once.
    let out = std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
        .args(["user", "tokens", "--data-dir"])
        .arg(&hub.dir)
        .output()
        .expect("user tokens");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !listing.contains("slt_"),
        "tokens are never shown again: {listing}"
    );
    let id = listing
        .lines()
        .find(|l| l.split('\t').nth(1) == Some("jiancha"))
        .and_then(|l| l.split('\t').next())
        .expect("the supervisor's token is listed")
        .to_owned();
    let out = std::process::Command::new(sunlight_tests::bin("sunlight-hub"))
        .args(["user", "revoke-token", "--id", &id, "--data-dir"])
        .arg(&hub.dir)
        .output()
        .expect("user revoke-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        supervisor.get_text(&url("/api/v1/cases")).expect("GET").0,
        401
    );
    let audit: i64 = rusqlite::Connection::open(hub.dir.join("hub.db"))
        .expect("store")
        .query_row(
            "SELECT count(*) FROM audit WHERE action IN ('api_token.add', 'api_token.revoke')",
            [],
            |r| r.get(0),
        )
        .expect("audit");
    assert!(
        audit >= 4,
        "token creation and revocation are audited ({audit})"
    );

    // A dashboard session works too; changing something with it needs the CSRF header.
    let mut b = Browser::signed_in(&hub, "jiancha");
    assert_eq!(b.get("/api/v1/devices").status, 200);
    let r = b.post("/api/v1/roster/push", &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("X-CSRF-Token"), "{}", r.body);
    let mut head_session = Browser::signed_in(&hub, "shangshi");
    assert_eq!(head_session.get("/api/v1/cases").status, 403);
}

#[test]
fn the_snapshots_wall_shows_each_camera_in_scope_and_asks_for_a_new_picture() {
    let dir = scratch("dashboard-wall");
    let hub = hub_with_data(&dir);
    let sha_a = picture_of(&hub, "win-mz-1");
    let mut sup = Browser::signed_in(&hub, "jiancha");
    let wall = sup.get("/wall");
    assert_eq!(wall.status, 200);
    for cam in ["win-mz-1", "LS-CAM-SECRET"] {
        assert!(wall.body.contains(cam), "the wall shows {cam}");
    }
    assert!(
        wall.body
            .contains(&format!("/api/v1/blobs/{sha_a}?thumb=1"))
    );
    // Its thumbnail is served to the signed-in browser (the session cookie).
    let thumb = sup.get(&format!("/api/v1/blobs/{sha_a}?thumb=1"));
    assert_eq!(thumb.status, 200);
    // The history strip of the day.
    let strip = sup.get(&format!("/wall/{A}/win-mz-1?date={TODAY}"));
    assert!(strip.body.contains("09:30:00") && strip.body.contains("定时"));
    assert_eq!(
        sup.get(&format!("/wall/{A}/win-mz-1?date=11-04")).status,
        422
    );

    // "Snapshot now": needs the form's token; the box is not online here, so the wall says the
    // command is out and waits for it, refreshing itself.
    let token = wall.csrf().expect("token");
    let r = sup.post(
        "/wall/snapshot",
        &[("csrf", "wrong"), ("site", A), ("camera", "win-mz-1")],
    );
    assert_eq!(r.status, 403);
    let r = sup.post(
        "/wall/snapshot",
        &[("csrf", &token), ("site", A), ("camera", "win-mz-1")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.location().expect("back to the wall").to_owned();
    assert!(back.contains("outcome=waiting"), "{back}");
    let waiting = sup.get(&back);
    assert!(waiting.body.contains("抓拍指令已发出"), "{}", waiting.body);
    assert!(
        waiting.body.contains("content=\"10\""),
        "refreshes every 10 s"
    );
    let commands: i64 = rusqlite::Connection::open(hub.dir.join("hub.db"))
        .expect("store")
        .query_row(
            "SELECT count(*) FROM commands WHERE kind = 'snapshot' AND site = ?1",
            [A],
            |r| r.get(0),
        )
        .expect("commands");
    assert_eq!(commands, 1, "one command for A's box");

    // A head: their cameras only, never B's, not even by a direct link or a forged form.
    let mut head = Browser::signed_in(&hub, "shangshi");
    let wall = head.get("/wall");
    assert!(wall.body.contains("win-mz-1"));
    assert_no_leak("the head of A", "/wall", &wall.body, &B_ONLY);
    assert_eq!(head.get(&format!("/wall?site={B}")).status, 403);
    assert_eq!(head.get(&format!("/wall/{B}/LS-CAM-SECRET")).status, 403);
    let token = wall.csrf().expect("token");
    let r = head.post(
        "/wall/snapshot",
        &[("csrf", &token), ("site", B), ("camera", "LS-CAM-SECRET")],
    );
    assert_eq!(r.status, 403);
    let sha_b = picture_of(&hub, "LS-CAM-SECRET");
    assert_eq!(
        head.get(&format!("/api/v1/blobs/{sha_b}?thumb=1")).status,
        404
    );
    assert_eq!(head.get(&format!("/api/v1/blobs/{sha_a}")).status, 200);
}

#[test]
fn the_fleet_page_shows_open_problems_and_the_backlog_trend() {
    let dir = scratch("dashboard-fleet");
    let hub = hub_with_data(&dir);
    let mut tech = Browser::signed_in(&hub, "yunwei");
    // The watcher looks at the fleet when the hub starts: B's disk is 96% full and its backlog only
    // grew for two hours.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let fleet = loop {
        let page = tech.get("/fleet");
        if page.body.contains("积压持续增长") || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(fleet.body.contains("当前问题"), "{}", fleet.body);
    assert!(fleet.body.contains("磁盘将满") && fleet.body.contains("积压持续增长"));
    assert!(fleet.body.contains("<polyline"), "a backlog line per box");
    // Raised once each, as alarms of box-lishan, however often the watcher looks.
    let conn = rusqlite::Connection::open(hub.dir.join("hub.db")).expect("store");
    let alarms: Vec<(String, String)> = conn
        .prepare("SELECT device, kind FROM alarms WHERE kind IN ('disk_full', 'backlog_growing', 'offline', 'clock_skew') ORDER BY kind")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("alarms");
    assert_eq!(
        alarms,
        vec![
            ("box-lishan".to_owned(), "backlog_growing".to_owned()),
            ("box-lishan".to_owned(), "disk_full".to_owned())
        ]
    );
    // A head of A sees neither B's problems nor its box.
    let mut head = Browser::signed_in(&hub, "shangshi");
    let page = head.get("/fleet");
    assert_no_leak("the head of A", "/fleet", &page.body, &B_ONLY);
    assert!(!page.body.contains("磁盘将满"));
}
