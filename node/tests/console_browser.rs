//! The operator console in a real browser: headless Chromium (through chromedriver) against a
//! demo network running in this process, each node serving its HTTP API and console on
//! loopback. Logs in with the national node's token; sees every child region (and, at a
//! county, every township) delivered on the return-flow page; searches the catalog and opens
//! an entry; publishes a CSV through the return-flow page's form and watches the upload reach
//! 100 %, the report appear and the live events bring the new dataset's delivery; visits every
//! page with no console error. Screenshots of each page go to `docs/screenshots/` with
//! `BACKFLOW_SCREENSHOTS=1` (else to a temp dir).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); fails, saying
//! so, without them.

mod browser;
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backflow_node::demo::{demo_catalog_entry, demo_regions};
use backflow_node::localnet::{Http, LocalNet};
use backflow_node::node::NodeHandle;
use backflow_node::partition::Format;
use backflow_node::publish::PublishRequest;
use backflow_topology::{Level, RegionCode, Topology};
use fantoccini::{Client, Locator};

use browser::{assert_clean_console, wait_for_script, COLLECT_ERRORS};
use common::{code, fast, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// A CSV of `per_township` records for each township (real village codes).
fn write_csv(path: &Path, townships: &[RegionCode], per_township: usize, tag: &str) -> Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "record_id,village_code,household,benefit_yuan")?;
    for (i, t) in townships.iter().enumerate() {
        let villages = backflow_topology::villages_of(*t);
        for n in 0..per_township {
            let village = villages[n % villages.len()];
            writeln!(w, "{tag}-{i}-{n},{village},H{i:03}{n:05},{}", 100 + n)?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Where the screenshots go: the repository's `docs/screenshots/` when asked for.
fn screenshot_dir(tmp: &Path) -> Result<PathBuf> {
    let dir = if std::env::var("BACKFLOW_SCREENSHOTS").as_deref() == Ok("1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots")
    } else {
        tmp.join("screenshots")
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The demo network with one dataset published at national and delivered everywhere, and
/// every node's benefit register in the catalog national searches.
async fn delivered_network(dir: &Path) -> Result<(LocalNet, Vec<RegionCode>)> {
    let regions = demo_regions(2)?;
    let net = LocalNet::start(&regions, &dir.join("net"), fast()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let townships: Vec<RegionCode> = regions
        .iter()
        .copied()
        .filter(|r| r.level() == Level::Township)
        .collect();
    let csv = dir.join("benefits.csv");
    write_csv(&csv, &townships, 200, "demo")?;
    let national = net.nodes[&RegionCode::NATIONAL].clone();
    let req = PublishRequest {
        dataset: "demo-benefits".into(),
        region_field: "village_code".into(),
        format: Format::Csv,
        department: "ministry-of-civil-affairs".into(),
        work_dir: dir.join("spill"),
        rejects_path: None,
    };
    national
        .publish_file(req, &csv, Arc::new(AtomicU64::new(0)))
        .await?;
    wait_until("delivery of demo-benefits", WAIT, async || {
        complete(&national, "demo-benefits").await
    })
    .await?;
    let topo = Topology::china();
    for (r, h) in net
        .nodes
        .iter()
        .filter(|(r, _)| **r != RegionCode::NATIONAL)
    {
        let name = topo.get(*r).map_or("", |x| x.name.as_str());
        h.catalog_submit("civil-affairs".into(), vec![demo_catalog_entry(*r, name)])
            .await?;
    }
    let want = net.nodes.len() as u64 - 1;
    wait_until("the catalog at national", WAIT, async || {
        let query = backflow_protocol::catalog_search::SearchQuery {
            text: "低保对象名册".into(),
            limit: 5,
            ..Default::default()
        };
        Ok(national
            .catalog_search(query)
            .await
            .is_ok_and(|v| v.total >= want))
    })
    .await?;
    Ok((net, townships))
}

async fn complete(node: &NodeHandle, dataset: &str) -> Result<bool> {
    let st = node.status(Some(dataset.into())).await?;
    Ok(st.first().is_some_and(|s| s.complete))
}

/// Opens `path` on `http`'s console, installs the error collector, and checks the console.
async fn open(c: &Client, http: &Http, path: &str) -> Result<()> {
    c.goto(&format!("http://{}{path}", http.addr)).await?;
    c.execute(COLLECT_ERRORS, vec![]).await?;
    assert_clean_console(c, path).await
}

async fn screenshot(c: &Client, dir: &Path, name: &str) -> Result<()> {
    let png = c.screenshot().await?;
    anyhow::ensure!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    Ok(())
}

/// A script expression: every delivery row on the page (`#delivery`'s states) reads
/// complete — `want` rows at least — as 已送达 (complete).
fn all_complete(want: usize) -> String {
    format!(
        "(function () {{ \
           var s = document.querySelectorAll('#delivery table span.state'); \
           if (s.length < {want}) {{ return false; }} \
           for (var i = 0; i < s.length; i++) {{ \
             if (!s[i].classList.contains('complete') || s[i].textContent.trim() !== '已送达') {{ \
               return false; \
             }} \
           }} \
           return true; \
         }})()"
    )
}

/// Clicks the link reading `text` on the return-flow page. The live events replace the
/// delivery fragment every 2 s, so the link found may be gone before the click lands: then it
/// is found again (a few times, not forever).
async fn click_link(c: &Client, text: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match c.find(Locator::LinkText(text)).await?.click().await {
            Ok(()) => return Ok(()),
            Err(e) if e.to_string().contains("stale element") => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(anyhow::anyhow!(
        "the link {text:?} kept going stale: {last:?}"
    ))
}

async fn login(c: &Client, http: &Http) -> Result<()> {
    c.goto(&format!("http://{}/", http.addr)).await?;
    // Not logged in: the console sends the browser to its login page.
    let url = c.current_url().await?;
    anyhow::ensure!(url.path() == "/login", "not sent to /login but to {url}");
    c.find(Locator::Css("#token"))
        .await?
        .send_keys(http.token.expose())
        .await?;
    c.find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_for_script(
        c,
        "the overview after login",
        WAIT,
        "return location.pathname === '/' && !!document.querySelector('form.logout');",
    )
    .await
}

/// The browser's part, on a network already delivered.
async fn drive(
    c: &Client,
    served: &std::collections::BTreeMap<RegionCode, Http>,
    townships: &[RegionCode],
    dir: &Path,
    shots: &Path,
) -> Result<()> {
    let national = &served[&RegionCode::NATIONAL];
    login(c, national).await?;
    c.execute(COLLECT_ERRORS, vec![]).await?;
    assert_clean_console(c, "/ (after login)").await?;
    screenshot(c, shots, "overview").await?;

    // Return flow: national's children (two provinces) complete; each county's townships too.
    open(c, national, "/ui/return-flow").await?;
    let done = format!("return {};", all_complete(2));
    wait_for_script(c, "national's children complete", WAIT, &done).await?;
    // The delivery tree, opened by clicking down from national to 东城区's townships, each
    // level complete; the trail leads back up.
    let dongcheng = townships
        .iter()
        .filter(|t| t.parent() == Some(code("110101")))
        .count();
    for (name, want) in [("北京市", 1), ("市辖区", 1), ("东城区", dongcheng)] {
        click_link(c, name).await?;
        let here = format!(
            "return document.querySelector('nav.crumbs strong').textContent === '{name}' \
             && {};",
            all_complete(want)
        );
        wait_for_script(c, &format!("the tree opened at {name}"), WAIT, &here).await?;
        c.execute(COLLECT_ERRORS, vec![]).await?;
        assert_clean_console(c, &format!("/ui/return-flow at {name}")).await?;
    }
    let leaves = c
        .execute(
            "return document.querySelectorAll('#delivery table td a').length;",
            vec![],
        )
        .await?;
    anyhow::ensure!(
        leaves.as_u64() == Some(0),
        "townships are leaves, yet {leaves} links"
    );
    screenshot(c, shots, "return-flow-tree").await?;
    c.find(Locator::LinkText("中华人民共和国"))
        .await?
        .click()
        .await?;
    wait_for_script(c, "back at national", WAIT, &done).await?;
    for county in [code("110101"), code("441900")] {
        let n = townships
            .iter()
            .filter(|t| t.parent() == Some(county))
            .count();
        // Cookies are per host, not per port: this login replaces national's session.
        login(c, &served[&county]).await?;
        open(c, &served[&county], "/ui/return-flow").await?;
        let done = format!("return {};", all_complete(n));
        wait_for_script(c, "a county's townships complete", WAIT, &done).await?;
        assert_clean_console(c, "county return flow").await?;
    }
    login(c, national).await?;

    // Publish through the form: the upload's bar reaches 100 %, the report appears, and the
    // live events (no reload) bring the new dataset's delivery, complete.
    open(c, national, "/ui/return-flow").await?;
    let upload = dir.join("upload.csv");
    write_csv(&upload, townships, 50, "browser")?;
    c.find(Locator::Css("details.publish summary"))
        .await?
        .click()
        .await?;
    let form = c.find(Locator::Css("form#publish")).await?;
    form.find(Locator::Css("input[type=file]"))
        .await?
        .send_keys(&upload.canonicalize()?.display().to_string())
        .await?;
    form.find(Locator::Css("input[name=dataset]"))
        .await?
        .send_keys("browser-upload")
        .await?;
    form.find(Locator::Css("input[name=region_field]"))
        .await?
        .send_keys("village_code")
        .await?;
    // A marker that a reload would lose: the page must update in place.
    c.execute("window.__same_page = true;", vec![]).await?;
    form.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_for_script(
        c,
        "the publish report",
        WAIT,
        "var r = document.querySelector('#publish-result p.ok'); \
         return !!r && r.textContent.indexOf('browser-upload') >= 0;",
    )
    .await?;
    let progress = c
        .execute(
            "return document.getElementById('publish-progress').value;",
            vec![],
        )
        .await?;
    anyhow::ensure!(
        progress.as_f64() == Some(100.0),
        "upload progress {progress}, not 100"
    );
    wait_for_script(
        c,
        "the live delivery of browser-upload",
        WAIT,
        &format!(
            "return !!window.__same_page \
               && document.getElementById('delivery').textContent.indexOf('browser-upload') >= 0 \
               && {};",
            all_complete(4)
        ),
    )
    .await?;
    let live = c.find(Locator::Css("#live")).await?.attr("class").await?;
    anyhow::ensure!(
        live.as_deref() == Some("live on"),
        "the live-events mark reads {live:?}"
    );
    assert_clean_console(c, "/ui/return-flow (after publishing)").await?;
    screenshot(c, shots, "return-flow").await?;

    // Catalog: search, see the registers, open one.
    open(c, national, "/ui/catalog").await?;
    c.find(Locator::Css("form.search input[name=q]"))
        .await?
        .send_keys("低保对象名册")
        .await?;
    c.find(Locator::Css("form.search button[type=submit]"))
        .await?
        .click()
        .await?;
    wait_for_script(
        c,
        "catalog results",
        WAIT,
        "return document.querySelectorAll('a[href^=\"/ui/catalog/benefit-register-\"]').length > 0;",
    )
    .await?;
    c.execute(COLLECT_ERRORS, vec![]).await?;
    assert_clean_console(c, "/ui/catalog?q=").await?;
    screenshot(c, shots, "catalog").await?;
    c.find(Locator::Css("a[href^='/ui/catalog/benefit-register-']"))
        .await?
        .click()
        .await?;
    wait_for_script(
        c,
        "a catalog entry",
        WAIT,
        "return location.pathname.indexOf('/ui/catalog/benefit-register-') === 0 \
         && document.body.textContent.indexOf('village_code') >= 0;",
    )
    .await?;
    c.execute(COLLECT_ERRORS, vec![]).await?;
    assert_clean_console(c, "/ui/catalog/{id}").await?;

    open(c, national, "/ui/sharing").await?;
    screenshot(c, shots, "sharing").await?;

    // Ledger: the page, then its verification button.
    open(c, national, "/ui/ledger").await?;
    screenshot(c, shots, "ledger").await?;
    c.find(Locator::Css("form[action='/ui/ledger/verify'] button"))
        .await?
        .click()
        .await?;
    wait_for_script(
        c,
        "the ledger's verification",
        WAIT,
        "return location.pathname === '/ui/ledger/verify';",
    )
    .await?;
    c.execute(COLLECT_ERRORS, vec![]).await?;
    assert_clean_console(c, "/ui/ledger/verify").await?;

    // English, for one page: the switch keeps working in a real browser.
    open(c, national, "/ui/return-flow?lang=en").await?;
    wait_for_script(
        c,
        "the English page",
        WAIT,
        "return document.documentElement.lang === 'en';",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_in_a_real_browser() -> Result<()> {
    let (chromium, chromedriver) = browser::programs()?;
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let shots = screenshot_dir(tmp.path())?;
    let (net, townships) = delivered_network(tmp.path()).await?;
    let served = net.serve_http().await?;
    let network_ready = started.elapsed();

    let driver = browser::Driver::start(&chromedriver)?;
    let c = driver.browser(&chromium).await?;
    let outcome = drive(&c, &served, &townships, tmp.path(), &shots).await;
    let closed = c.close().await;
    drop(driver);
    for http in served.into_values() {
        http.stop().await?;
    }
    net.shutdown().await?;
    outcome?;
    closed.context("closing the browser session")?;
    for page in ["overview", "return-flow", "catalog", "sharing", "ledger"] {
        let png = shots.join(format!("{page}.png"));
        anyhow::ensure!(png.is_file(), "no screenshot {}", png.display());
    }
    eprintln!(
        "console_in_a_real_browser: network delivered in {:.1}s, browser part {:.1}s; \
         screenshots in {}",
        network_ready.as_secs_f64(),
        (started.elapsed() - network_ready).as_secs_f64(),
        shots.display()
    );
    Ok(())
}
