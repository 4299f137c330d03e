//! Headless Chromium for the browser tests (tests/tests/browser.rs, browser_report.rs): Debian's
//! `chromium` and `chromium-driver` (which scripts/test installs), chromedriver on a free port,
//! driven with fantoccini, and the WebDriver steps the tests share.

use crate::{Proc, bin_dir, free_port};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fantoccini;

/// The first of these that exists.
fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver running on a free port (killed when dropped), and the Chromium it starts.
pub struct Chromedriver {
    _proc: Proc,
    pub port: u16,
    pub browser: PathBuf,
}

/// chromedriver on a free port (its log in `dir`), or a clear failure saying what to install.
pub fn chromedriver(dir: &Path) -> Chromedriver {
    let missing = "headless Chromium is needed for this test and is not installed: scripts/test installs it \
                   (apt-get install chromium chromium-driver on Debian)";
    let browser = find(&[
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ])
    .unwrap_or_else(|| panic!("no chromium binary: {missing}"));
    let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
        .unwrap_or_else(|| panic!("no chromedriver: {missing}"));
    let port = free_port();
    let proc = Proc::spawn(
        std::process::Command::new(driver).arg(format!("--port={port}")),
        dir.join("chromedriver.log"),
    );
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        up,
        "chromedriver did not start; see {}",
        dir.join("chromedriver.log").display()
    );
    Chromedriver {
        _proc: proc,
        port,
        browser,
    }
}

impl Chromedriver {
    /// A Chromium session; with `downloads`, one that saves downloads there without asking.
    pub async fn connect(&self, downloads: Option<&Path>) -> Client {
        let mut options = json!({
            "binary": self.browser,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--lang=zh-CN", "--no-first-run"]
        });
        if let Some(downloads) = downloads {
            options["prefs"] = json!({
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
                "safebrowsing.enabled": false
            });
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromium did not start under chromedriver ({e}); is the chromium package complete?"
                )
            })
    }

    /// Starts Chromium (within 60 s; downloads as in [`Chromedriver::connect`]), runs `session`
    /// with it on a fresh runtime within `limit`, closes the browser and returns what the session
    /// returned. `what` names the session in the failure when it overruns.
    pub fn drive<T, F>(
        &self,
        downloads: Option<&Path>,
        limit: Duration,
        what: &str,
        session: impl FnOnce(Client) -> F,
    ) -> T
    where
        F: Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let c = tokio::time::timeout(Duration::from_secs(60), self.connect(downloads))
                .await
                .expect("chromium started within 60 s");
            let outcome = tokio::time::timeout(limit, session(c.clone())).await;
            let _ = c.close().await;
            outcome.unwrap_or_else(|_| panic!("{what} finished within {limit:?}"))
        })
    }
}

/// Saves the page as `name.png` in `dir`.
pub async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Waits (up to 10 s) until the page's path satisfies `ok`: a click that navigates returns before
/// the new page has always arrived.
pub async fn wait_path(c: &Client, what: &str, ok: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        if let Ok(url) = c.current_url().await {
            if ok(url.path()) && c.find(Locator::Css("body")).await.is_ok() {
                return url.path().to_owned();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the browser never reached {what}; it is at {:?}",
        c.current_url().await.ok()
    );
}

/// Waits (up to 10 s) until the page's text contains `needle`.
pub async fn wait_text(c: &Client, needle: &str) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(body) = c.find(Locator::Css("body")).await {
            last = body.text().await.unwrap_or_default();
            if last.contains(needle) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page never showed {needle:?}; it shows:\n{last}");
}

/// Fills in the sign-in form and submits it.
pub async fn sign_in(c: &Client, name: &str, password: &str) {
    for (field, value) in [("name", name), ("password", password)] {
        c.find(Locator::Css(&format!("input[name={field}]")))
            .await
            .expect("sign-in field")
            .send_keys(value)
            .await
            .expect("type");
    }
    click(c, Locator::Css("button[type=submit]")).await;
}

pub async fn click(c: &Client, what: Locator<'_>) {
    c.find(what)
        .await
        .expect("element to click")
        .click()
        .await
        .expect("click");
}

/// Copies the screenshots in `shots` to `target/debug/e2e/browser-screenshots/`, where a person
/// can look at them after the run (emptied first when `fresh`); returns how many were copied.
pub fn keep_screenshots(shots: &Path, fresh: bool) -> usize {
    let keep = bin_dir().join("e2e").join("browser-screenshots");
    if fresh {
        let _ = std::fs::remove_dir_all(&keep);
    }
    std::fs::create_dir_all(&keep).expect("keep dir");
    let mut n = 0;
    for f in std::fs::read_dir(shots).expect("shots").flatten() {
        std::fs::copy(f.path(), keep.join(f.file_name())).expect("copy screenshot");
        n += 1;
    }
    n
}
