//! The web console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `bash .ci/run` installs them) driven over WebDriver. A person logs in,
//! finds a file of the older snapshot by clicking, downloads it (the browser's own download,
//! compared byte for byte), and compares the two snapshots. Each page is saved as a
//! screenshot under `target/console-screenshots/` for a person to look at.
//!
//! `HOARD_CHROMIUM` and `HOARD_CHROMEDRIVER` point elsewhere than /usr/bin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test fails loudly on purpose

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

const TOKEN: &str = "browser-token-81c3";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn program(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        p.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (bash .ci/run does), or set {var}",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chromedriver() -> (Killed, String) {
    let port = free_port();
    let child = Command::new(program("HOARD_CHROMEDRIVER", "/usr/bin/chromedriver"))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), url)
}

async fn browser(driver: &str, downloads: &Path, profile: &Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": program("HOARD_CHROMIUM", "/usr/bin/chromium"),
            // Nothing may leave 127.0.0.1: no background services, no component updates.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                     format!("--user-data-dir={}", profile.display())],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        },
    });
    let caps = caps.as_object().unwrap().clone();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a Chromium session through chromedriver")
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    fs::write(shots_dir().join(format!("{name}.png")), png).unwrap();
}

/// Clicks what leads to another page and waits until that page has loaded: a WebDriver
/// click may return before the navigation, and elements found meanwhile belong to the old
/// page (stale a moment later).
async fn follow(c: &Client, e: fantoccini::elements::Element) {
    let before = c.current_url().await.unwrap().to_string();
    e.click().await.unwrap();
    settle(c, &before).await;
}

/// Waits until the browser is on a page other than `before`, fully loaded.
async fn settle(c: &Client, before: &str) {
    let start = Instant::now();
    loop {
        let now = c.current_url().await.unwrap().to_string();
        let ready = c
            .execute("return document.readyState", vec![])
            .await
            .unwrap();
        if now != before && ready == "complete" {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still on {before}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click_link(c: &Client, text: &str) {
    let link = c
        .find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("no link {text:?}: {e}"));
    follow(c, link).await;
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// An element of the page, once the page after a click has it.
async fn el(c: &Client, l: Locator<'_>) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(l)
        .await
        .unwrap_or_else(|e| panic!("no element: {e}"))
}

/// The full id behind a short one, from the diff page's list.
async fn full_id(c: &Client, short: &str) -> String {
    c.find(Locator::Css(&format!("#a option[value^='{short}']")))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap()
}

fn wait_for_file(path: &Path, len: usize) -> Vec<u8> {
    let start = Instant::now();
    loop {
        if let Ok(b) = fs::read(path) {
            if b.len() == len {
                return b;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} was not downloaded",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn browse_download_and_diff_in_chromium() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("etc/app")).unwrap();
    let monday = random_bytes(300_000, 21);
    fs::write(src.join("etc/app/settings.bin"), &monday).unwrap();
    fs::write(src.join("etc/app/config.yaml"), b"replicas: 3\n").unwrap();
    let older = env.hoard_json(&["backup", "--tag", "monday", src.to_str().unwrap()]);
    let older = older["snapshot_id"].as_str().unwrap()[..8].to_string();
    fs::write(src.join("etc/app/settings.bin"), random_bytes(300_000, 22)).unwrap();
    fs::write(src.join("etc/app/config.yaml"), b"replicas: 5\n").unwrap();
    fs::write(src.join("etc/app/added.txt"), b"new on tuesday").unwrap();
    let newer = env.hoard_json(&["backup", "--tag", "tuesday", src.to_str().unwrap()]);
    let newer = newer["snapshot_id"].as_str().unwrap()[..8].to_string();

    let mut c = env.cmd();
    c.env("HOARD_SERVE_TOKEN", TOKEN)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let console = start_console(c);
    let url = console.url.clone();

    let (_driver, driver_url) = chromedriver();
    let downloads = env.path("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(&driver_url, &downloads, &env.path("profile")).await;
        // Without the token, the console sends the browser to the login page.
        c.goto(&format!("{url}/")).await.unwrap();
        assert!(c.current_url().await.unwrap().path() == "/login");
        assert!(!c.source().await.unwrap().contains(&older));
        shot(&c, "1-login").await;
        el(&c, Locator::Id("token"))
            .await
            .send_keys(TOKEN)
            .await
            .unwrap();
        follow(&c, el(&c, Locator::Id("login")).await).await;

        // The snapshot list, then the older snapshot, down to the file by clicking.
        let list = body_text(&c).await;
        assert!(
            list.contains(&older) && list.contains(&newer) && list.contains("monday"),
            "{list}"
        );
        shot(&c, "2-snapshots").await;
        click_link(&c, &older).await;
        for part in src
            .strip_prefix("/")
            .unwrap()
            .iter()
            .chain(["etc".as_ref(), "app".as_ref()])
        {
            click_link(&c, part.to_str().unwrap()).await;
        }
        let dir = body_text(&c).await;
        assert!(
            dir.contains("settings.bin") && !dir.contains("added.txt"),
            "{dir}"
        );
        shot(&c, "3-tree").await;
        click_link(&c, "config.yaml").await;
        let preview = el(&c, Locator::Id("preview")).await.text().await.unwrap();
        assert_eq!(preview.trim(), "replicas: 3");
        shot(&c, "4-file").await;
        let file_page = c.current_url().await.unwrap().to_string();
        c.back().await.unwrap();
        settle(&c, &file_page).await;
        click_link(&c, "settings.bin").await;
        shot(&c, "5-binary-file").await;
        el(&c, Locator::Id("download")).await.click().await.unwrap();
        let got = wait_for_file(&downloads.join("settings.bin"), monday.len());
        assert!(
            got == monday,
            "the browser's download differs from Monday's file"
        );

        // What changed between the two.
        click_link(&c, "Diff").await;
        let (a, b) = (full_id(&c, &older).await, full_id(&c, &newer).await);
        el(&c, Locator::Id("a"))
            .await
            .select_by_value(&a)
            .await
            .unwrap();
        el(&c, Locator::Id("b"))
            .await
            .select_by_value(&b)
            .await
            .unwrap();
        follow(&c, el(&c, Locator::Id("compare")).await).await;
        let summary = el(&c, Locator::Id("summary")).await.text().await.unwrap();
        assert!(
            summary.contains("1 files added, 0 removed, 2 changed"),
            "{summary}"
        );
        let changes = el(&c, Locator::Id("changes")).await.text().await.unwrap();
        assert!(
            changes.contains("+ ") && changes.contains("etc/app/added.txt"),
            "{changes}"
        );
        assert!(
            changes.contains("M ") && changes.contains("etc/app/config.yaml"),
            "{changes}"
        );
        shot(&c, "6-diff").await;
        click_link(&c, "Health").await;
        assert!(body_text(&c).await.contains("Dedup ratio"));
        shot(&c, "7-health").await;
        c.close().await.unwrap();
    });
}
