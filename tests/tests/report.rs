//! The monthly report through a real hub over real HTTP: the page with its charts for a supervisor
//! (county and one township), the weekly summary, the exports (XLSX read back with calamine, CSV
//! with its byte-order mark), the scope — a head of township A gets neither the page nor an export
//! of township B, and a unit chief sees only their unit —, bad periods, and the JSON form at
//! `/api/v1/reports/…` through the harness's `Hub` methods.

mod dashboard_fixture;

use dashboard_fixture::*;
use sunlight_tests::scratch;

/// A download with the browser's session cookie: (status, headers, bytes).
fn download(
    hub: &sunlight_tests::Hub,
    b: &Browser,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cookie = format!("sl_session={}", b.cookies["sl_session"]);
    rt.block_on(async {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(format!("http://127.0.0.1:{}{path}", hub.http))
            .header("cookie", cookie)
            .send()
            .await
            .expect("download");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.bytes().await.expect("body").to_vec())
    })
}

fn xlsx_cells(bytes: Vec<u8>) -> Vec<String> {
    use calamine::{Reader as _, Xlsx};
    let mut book = Xlsx::new(std::io::Cursor::new(bytes)).expect("an XLSX file");
    let mut out = Vec::new();
    for name in book.sheet_names() {
        let range = book.worksheet_range(&name).expect("sheet");
        out.extend(range.rows().flat_map(|r| r.iter().map(|c| c.to_string())));
    }
    out
}

#[test]
fn the_report_page_exports_and_scope() {
    let dir = scratch("dashboard-report");
    let hub = hub_with_data(&dir);

    // The supervisor's county report for November (up to the hub's day, 11-04): accepted SS-0003,
    // SS-0004 at A and LS-SECRET-02 at B; completed SS-0004 and LS-SECRET-02.
    let mut sup = Browser::signed_in(&hub, "jiancha");
    let r = sup.get("/reports?month=2025-11");
    assert_eq!(r.status, 200, "{}", r.body);
    for s in [
        "2025-11 窗口工作情况通报（全县）",
        "受理业务办件 <b>3</b> 件",
        "办结 <b>2</b> 件",
        "<svg id=\"chart-volumes\"",
        "<svg id=\"chart-trend\"",
        "<svg id=\"chart-attendance\"",
        "@media print",
        "export.xlsx?month=2025-11",
        A,
        B,
        "咨询件",
    ] {
        assert!(r.body.contains(s), "the county report lacks {s:?}");
    }
    assert!(!r.body.contains("<script"), "no scripts");
    // One township; the default period is the last full month (October): SS-0001 and SS-0002.
    let r = sup.get(&format!("/reports?site={A}"));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("2025-10 窗口工作情况通报"), "{}", r.body);
    assert!(r.body.contains("受理业务办件 <b>2</b> 件"), "{}", r.body);
    // The weekly summary: week 45 (11-03 … 11-09).
    let r = sup.get(&format!("/reports?week=2025-W45&site={A}"));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("2025-W45 窗口工作周报"), "{}", r.body);
    assert!(r.body.contains("2025-11-03 – 2025-11-09"), "{}", r.body);
    // Bad periods are refused with the format.
    for bad in [
        "/reports?month=2025-13",
        "/reports?month=11-2025",
        "/reports?week=2025-W60",
    ] {
        let r = sup.get(bad);
        assert_eq!(r.status, 422, "{bad}");
        assert!(r.body.contains("YYYY-"), "{bad}: {}", r.body);
    }

    // The exports, as the supervisor: XLSX with the figures, CSV with a BOM.
    let (status, headers, bytes) = download(&hub, &sup, "/reports/export.xlsx?month=2025-11");
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("sunlight-report-2025-11.xlsx")
    );
    let cells = xlsx_cells(bytes);
    assert!(cells.contains(&"2025-11 窗口工作情况通报（全县）".to_owned()));
    assert!(cells.contains(&B.to_owned()) && cells.contains(&A.to_owned()));
    let (status, headers, bytes) = download(
        &hub,
        &sup,
        &format!("/reports/export.csv?month=2025-11&site={B}"),
    );
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(bytes.starts_with("\u{feff}".as_bytes()));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(&format!("{B},民政办,1,0,1,1,0,1,")), "{text}");
    assert_eq!(
        download(&hub, &sup, "/reports/export.pdf?month=2025-11").0,
        404
    );

    // The head of A: their own township by default; B's page and exports are refused.
    let mut head = Browser::signed_in(&hub, "shangshi");
    let r = head.get("/reports?month=2025-11");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("受理业务办件 <b>2</b> 件"), "{}", r.body);
    for s in B_ONLY {
        assert!(
            !r.body.contains(s),
            "the head of A sees {s:?} in the report"
        );
    }
    for path in [
        format!("/reports?month=2025-11&site={B}"),
        format!("/reports?week=2025-W45&site={B}"),
    ] {
        assert_eq!(head.get(&path).status, 403, "{path}");
    }
    for path in [
        format!("/reports/export.xlsx?month=2025-11&site={B}"),
        format!("/reports/export.csv?month=2025-11&site={B}"),
    ] {
        let (status, _, bytes) = download(&hub, &head, &path);
        assert_eq!(status, 403, "{path}");
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("LS-SECRET") && !text.contains("陈秘密"));
    }
    // The head's own exports hold A only.
    let (status, _, bytes) = download(&hub, &head, "/reports/export.xlsx?month=2025-11");
    assert_eq!(status, 200);
    let cells = xlsx_cells(bytes);
    assert!(cells.iter().any(|c| c.contains(A)));
    for s in B_ONLY {
        assert!(
            !cells.iter().any(|c| c.contains(s)),
            "{s:?} in the head's XLSX"
        );
    }
    let (_, _, bytes) = download(&hub, &head, "/reports/export.csv?month=2025-11");
    let text = String::from_utf8(bytes).unwrap();
    for s in B_ONLY {
        assert!(!text.contains(s), "{s:?} in the head's CSV");
    }

    // The chief of A's 民政办 sees that unit only.
    let mut chief = Browser::signed_in(&hub, "shangshi-mz");
    let r = chief.get("/reports?month=2025-10");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("民政办"));
    for s in A_FORESTRY_ONLY.iter().chain(B_ONLY.iter()) {
        assert!(!r.body.contains(s), "the chief of 民政办 sees {s:?}");
    }
    let (_, _, bytes) = download(&hub, &chief, "/reports/export.csv?month=2025-10");
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("林业站"), "{text}");

    // A technician has no reports.
    let mut tech = Browser::signed_in(&hub, "yunwei");
    assert_eq!(tech.get("/reports").status, 403);

    // The JSON form for integrations.
    let json = hub
        .get(&format!("/api/v1/reports/monthly?month=2025-11&site={A}"))
        .expect("monthly report JSON");
    assert_eq!(json["period"]["label"], "2025-11");
    assert_eq!(json["total"]["accepted"], 2);
    assert_eq!(json["total"]["completed"], 1);
    assert_eq!(json["sites"], serde_json::json!([A]));
    assert!(json["missing"].as_array().is_some_and(|m| !m.is_empty()));
    let json = hub
        .get("/api/v1/reports/weekly?week=2025-W45")
        .expect("weekly report JSON");
    assert_eq!(json["period"]["from"], "2025-11-03");
    assert_eq!(json["total"]["accepted"], 3);
    let (status, body) = hub
        .get_text("/api/v1/reports/monthly?month=2025-13")
        .expect("answer");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("YYYY-MM"), "{body}");
}
