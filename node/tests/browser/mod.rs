//! Headless Chromium driven over WebDriver: chromedriver started on a free loopback port, a
//! browser session with its console log kept (`goog:loggingPrefs`), and the log read back
//! (chromedriver's `POST /session/{id}/se/log`). Debian's `chromium` and `chromium-driver`
//! packages provide both programs; the test fails, naming them, when they are missing.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

const INSTALL: &str = "apt-get install chromium chromium-driver";

/// `name` on `PATH`, or `None`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The browser and its driver, or an error saying how to install them.
pub fn programs() -> Result<(PathBuf, PathBuf)> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    let driver = on_path("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => bail!(
            "the console's browser test needs headless Chromium and chromedriver on PATH \
             (missing: {}{}); install them with `{INSTALL}` (Debian), as .ci/run does",
            if c.is_none() { "chromium " } else { "" },
            if d.is_none() { "chromedriver" } else { "" },
        ),
    }
}

/// chromedriver, running on a loopback port until dropped.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub fn start(program: &Path) -> Result<Driver> {
        // A free port: the kernel picks one, which is released for chromedriver to take.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let t = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if t.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not listen on {addr} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }

    /// A headless Chromium session (1280×900, Chinese first, the console log kept).
    pub async fn browser(&self, chromium: &Path) -> Result<Client> {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=zh-CN",
                    "--hide-scrollbars",
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("opening a Chromium session through chromedriver")
    }
}

/// chromedriver's log command: the browser console's entries since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// One console entry: its level (`SEVERE`, `WARNING`, `INFO`, …) and message.
#[derive(Debug)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

/// The console entries logged since the last call (errors, CSP violations, failed loads).
pub async fn console_log(client: &Client) -> Result<Vec<LogEntry>> {
    let v = client.issue_cmd(BrowserLog).await?;
    let entries = v.as_array().context("the browser log is not a list")?;
    Ok(entries
        .iter()
        .map(|e| LogEntry {
            level: e["level"].as_str().unwrap_or("").to_string(),
            message: e["message"].as_str().unwrap_or("").to_string(),
        })
        .collect())
}

/// Fails if the console logged an error or a warning since the last call, or the page's
/// `window.onerror` collector ([`COLLECT_ERRORS`]) caught one.
pub async fn assert_clean_console(client: &Client, page: &str) -> Result<()> {
    let bad: Vec<String> = console_log(client)
        .await?
        .into_iter()
        .filter(|e| e.level == "SEVERE" || e.level == "WARNING")
        .map(|e| format!("{}: {}", e.level, e.message))
        .collect();
    let caught = client
        .execute("return window.__errors || [];", vec![])
        .await?;
    let caught: Vec<String> = caught
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_str().unwrap_or("").to_string())
        .collect();
    if !bad.is_empty() || !caught.is_empty() {
        bail!("page {page}: console errors {bad:?}, uncaught {caught:?}");
    }
    Ok(())
}

/// Installed after a page loads: later errors (a live update's script, an upload's
/// handler) land in `window.__errors`, read by [`assert_clean_console`].
pub const COLLECT_ERRORS: &str = "window.__errors = window.__errors || []; \
    window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); }); \
    window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); }); \
    var orig = console.error; \
    console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, ' ')); \
    orig.apply(console, arguments); };";

/// Polls `check` (a script returning true when the page is as wanted) every 200 ms for up to
/// `timeout`; the error names `what` and the page's last text.
pub async fn wait_for_script(
    client: &Client,
    what: &str,
    timeout: Duration,
    check: &str,
) -> Result<()> {
    let t = Instant::now();
    loop {
        if client.execute(check, vec![]).await? == Value::Bool(true) {
            return Ok(());
        }
        if t.elapsed() > timeout {
            let text = client
                .execute("return document.body.innerText;", vec![])
                .await?;
            bail!(
                "timed out after {timeout:?} waiting for {what}; the page reads:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
