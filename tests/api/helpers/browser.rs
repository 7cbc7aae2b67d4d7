//! A real browser for the console's tests (SPEC §11): Debian's Chromium, headless, driven
//! through its chromedriver over WebDriver by fantoccini.
//!
//! Each [`Browser`] starts its own chromedriver on a free loopback port and one Chromium
//! with a fresh profile; dropping it ends both (they share a process group, which is
//! killed even when the test panicked). Browsers in this test binary take turns: two
//! cores are shared with the rest of the suite, and a starved Chromium makes slow tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, SemaphorePermit};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The longest any condition in a browser test is waited for.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// One browser at a time in this test binary.
static TURN: Semaphore = Semaphore::const_new(1);

/// The sizes the console must fit without horizontal scrolling (SPEC §11).
pub const LAPTOP: (u32, u32) = (1280, 800);
pub const PHONE: (u32, u32) = (390, 844);

/// A headless Chromium and the WebDriver session that drives it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: SemaphorePermit<'static>,
}

impl Drop for Browser {
    /// Kills chromedriver's process group: the driver and the Chromium it started.
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            let group = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Whether browser tests can run. Without Chromium a local run prints "skipped"; under
/// CI (`CI` set) the test fails, since `.ci/run` installs it.
pub fn chromium_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{CHROMIUM} or {CHROMEDRIVER} missing and CI is set: the browser tests must run");
    }
    eprintln!("skipped: {CHROMIUM} not installed (apt-get install chromium chromium-driver)");
    false
}

impl Browser {
    /// A browser whose page is `size` CSS pixels, or `None` (skipped) without Chromium.
    pub async fn start(size: (u32, u32)) -> Option<Self> {
        if !chromium_available() {
            return None;
        }
        let turn = TURN.acquire().await.expect("the semaphore is never closed");
        let profile = tempfile::tempdir().expect("profile dir");
        let (driver, port) = start_driver().await;
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities(&profile, size))
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session in Chromium");
        let browser = Self {
            client,
            driver,
            _profile: profile,
            _turn: turn,
        };
        browser.resize(size).await;
        Some(browser)
    }

    /// Makes the page `size` CSS pixels by device emulation (Chromium will not make a
    /// window narrower than 500 pixels); below 600 pixels wide it is a phone, which
    /// honours the page's viewport meta tag.
    pub async fn resize(&self, (width, height): (u32, u32)) {
        let metrics = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
        });
        self.client
            .issue_cmd(Cdp::new("Emulation.setDeviceMetricsOverride", metrics))
            .await
            .expect("device metrics");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    pub async fn js(&self, script: &str) -> Value {
        self.js_with(script, Vec::new()).await
    }

    /// Polls `check` every 100 ms until it returns `Some`, or panics naming `what`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body.innerText").await;
                panic!(
                    "{what}: not within {within:?}; the page reads:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_for_text(&self, needle: &str) {
        self.eventually(&format!("the text {needle:?}"), PATIENCE, || async {
            let text = self.js("return document.body.innerText").await;
            text.as_str().unwrap_or("").contains(needle).then_some(())
        })
        .await
    }

    /// The form control whose `<label>` reads exactly `label` (which proves the label is
    /// tied to it with `for`).
    pub async fn field(&self, label: &str) -> Element {
        let xpath = format!(
            "//*[@id=//label[normalize-space()={}]/@for]",
            xpath_literal(label)
        );
        self.wait_find(&xpath, &format!("a field labelled {label:?}"))
            .await
    }

    /// The button whose text is exactly `text`.
    pub async fn button(&self, text: &str) -> Element {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(text));
        self.wait_find(&xpath, &format!("a button {text:?}")).await
    }

    async fn wait_find(&self, xpath: &str, what: &str) -> Element {
        self.eventually(what, PATIENCE, || async {
            self.client.find(Locator::XPath(xpath)).await.ok()
        })
        .await
    }

    /// Whether the element `xpath` exists and is shown.
    pub async fn shown(&self, xpath: &str) -> bool {
        match self.client.find(Locator::XPath(xpath)).await {
            Ok(e) => e.is_displayed().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// SPEC §11: the page is `size` and nothing scrolls sideways.
    pub async fn assert_fits(&self, (width, height): (u32, u32), page: &str) {
        let sizes = self
            .js("return [document.documentElement.scrollWidth, innerWidth, innerHeight]")
            .await;
        let (scroll, inner) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        assert_eq!(
            (inner, sizes[2].as_u64().unwrap()),
            (width.into(), height.into()),
            "{page}: the viewport"
        );
        assert!(
            scroll <= inner,
            "{page}: scrollWidth {scroll} > innerWidth {inner}"
        );
    }

    /// Every resource the page loaded came from `origin` (SPEC §11: it works offline).
    pub async fn assert_same_origin(&self, origin: &str) {
        let names = self
            .js("return performance.getEntriesByType('resource').map(e => e.name)")
            .await;
        let names: Vec<&str> = names
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(!names.is_empty(), "no resources recorded");
        let prefix = format!("{origin}/");
        let foreign: Vec<_> = names.iter().filter(|n| !n.starts_with(&prefix)).collect();
        assert!(
            foreign.is_empty(),
            "requests to another origin: {foreign:?}"
        );
    }

    /// A PNG of the page, for the README: to `docs/screenshots/<name>.png` when
    /// `UPDATE_SCREENSHOTS` is set, else under the target directory (so an ordinary test
    /// run leaves the work tree clean).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = match std::env::var_os("UPDATE_SCREENSHOTS") {
            Some(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"),
            None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"),
        };
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the WebDriver session (Chromium quits); the driver goes with `Drop`.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// chromedriver on a free loopback port, in a process group of its own; waits until it
/// answers. A port taken between the probe and the start is tried again.
async fn start_driver() -> (Child, u16) {
    for _ in 0..5 {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
            probe.local_addr().unwrap().port()
        };
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = driver.try_wait() {
                break; // exited: most likely the port was taken
            }
            let status = super::client()
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await;
            if let Ok(r) = status
                && let Ok(body) = r.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return (driver, port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = driver.kill().await;
    }
    panic!("chromedriver did not start");
}

/// Headless Chromium as root on a closed network (see .library machine notes: without the
/// background-networking flags it keeps trying to reach Google's hosts).
fn capabilities(
    profile: &tempfile::TempDir,
    (width, height): (u32, u32),
) -> fantoccini::wd::Capabilities {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--hide-scrollbars".to_owned(),
        format!("--window-size={width},{height}"),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

/// A Chrome DevTools Protocol command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    body: String,
}

impl Cdp {
    fn new(cmd: &str, params: Value) -> Self {
        Self {
            body: json!({ "cmd": cmd, "params": params }).to_string(),
        }
    }
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.expect("a session");
        base_url.join(&format!("session/{session}/goog/cdp/execute"))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.body.clone()))
    }
}

/// `text` as an XPath string literal.
fn xpath_literal(text: &str) -> String {
    match text.contains('\'') {
        false => format!("'{text}'"),
        true => format!("\"{text}\""),
    }
}
