//! The monthly report in a real browser: headless Chromium through chromedriver (the setup of
//! tests/tests/browser.rs), a supervisor signs in, opens the report from the menu, switches to a
//! township and a month with the form, sees the three charts drawn, and downloads the XLSX and CSV
//! exports with the page's links into the browser's download folder; the XLSX is read back.

mod dashboard_fixture;

use dashboard_fixture::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sunlight_tests::browser::fantoccini::{Client, Locator};
use sunlight_tests::browser::{chromedriver, click, shot, sign_in, wait_text};
use sunlight_tests::scratch;

/// Waits (up to 20 s) for a finished download ending in `ext` (Chromium writes `.crdownload`
/// first and renames it when done).
async fn downloaded(dir: &Path, ext: &str) -> PathBuf {
    for _ in 0..400 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == ext) {
                    return p;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no .{ext} download in {}", dir.display());
}

async fn session(c: &Client, base: &str, shots: &Path, downloads: &Path) {
    c.goto(&format!("{base}/login")).await.expect("goto");
    sign_in(c, "jiancha", PASSWORD).await;
    wait_text(c, "总览").await;
    // The menu's 报表 entry opens the last full month's county report.
    click(c, Locator::LinkText("报表")).await;
    let t = wait_text(c, "窗口工作情况通报").await;
    assert!(t.contains("2025-10") && t.contains("全县"), "{t}");
    // Choose township A and November with the form.
    c.find(Locator::Css("select[name=site]"))
        .await
        .expect("site select")
        .select_by_value(A)
        .await
        .expect("select A");
    let month = c
        .find(Locator::Css("input[name=month]"))
        .await
        .expect("month field");
    // A month field takes its value typed as the browser shows it; set it directly instead.
    c.execute(
        "arguments[0].value = '2025-11';",
        vec![serde_json::to_value(&month).expect("element")],
    )
    .await
    .expect("set the month");
    click(c, Locator::Css("form.filters button[type=submit]")).await;
    let t = wait_text(c, "2025-11 窗口工作情况通报").await;
    assert!(t.contains(A) && t.contains("受理业务办件 2 件"), "{t}");
    // The charts are drawn (inline SVG, no script): bars for the volumes, a line for the trend.
    for id in ["chart-volumes", "chart-trend", "chart-attendance"] {
        let svg = c.find(Locator::Id(id)).await.expect("chart");
        let size = svg.rectangle().await.expect("size");
        assert!(size.2 > 100.0 && size.3 > 50.0, "{id} is drawn: {size:?}");
    }
    assert!(c.find(Locator::Css("#chart-volumes rect")).await.is_ok());
    shot(c, shots, "report-2025-11").await;
    // Download both exports with the page's links.
    click(c, Locator::Id("export-xlsx")).await;
    let xlsx = downloaded(downloads, "xlsx").await;
    click(c, Locator::Id("export-csv")).await;
    let csv = downloaded(downloads, "csv").await;
    assert!(
        xlsx.file_name()
            .unwrap()
            .to_string_lossy()
            .contains(&format!("2025-11-{A}")),
        "{xlsx:?}"
    );
    let text = std::fs::read(&csv).expect("csv");
    assert!(text.starts_with("\u{feff}".as_bytes()));
    assert!(String::from_utf8_lossy(&text).contains("民政办"));
    use calamine::{Reader as _, Xlsx};
    // The file may still be being flushed right after the rename: retry briefly.
    let mut book = None;
    for _ in 0..20 {
        if let Ok(b) = Xlsx::new(std::io::BufReader::new(
            std::fs::File::open(&xlsx).expect("open"),
        )) {
            book = Some(b);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut book: Xlsx<_> = book.expect("the downloaded XLSX opens");
    let range = book.worksheet_range("按单位").expect("sheet 按单位");
    let cells: Vec<String> = range
        .rows()
        .flat_map(|r| r.iter().map(|c| c.to_string()))
        .collect();
    assert!(
        cells.contains(&"民政办".to_owned()) && cells.contains(&"合计".to_owned()),
        "{cells:?}"
    );
}

#[test]
fn the_report_in_headless_chromium() {
    let dir = scratch("report-browser");
    let hub = hub_with_data(&dir);
    let driver = chromedriver(&dir);
    let shots = dir.join("screenshots");
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    std::fs::create_dir_all(&downloads).expect("download dir");
    let base = format!("http://127.0.0.1:{}", hub.http);
    let (shots, downloads) = (&shots, &downloads);
    driver.drive(
        Some(downloads),
        Duration::from_secs(120),
        "the browser session",
        |c| async move { session(&c, &base, shots, downloads).await },
    );
}
