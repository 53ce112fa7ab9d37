//! The unified catalog (Art. 16) with real nodes: entries submitted at a city reach national,
//! where they are stored (not held in the catalog sync's memory), listed page by page and
//! found by a search in Chinese words with filters — from the city too, which holds only its
//! subtree's catalog and asks national over the overlay; a later version of an entry replaces
//! it in the search, and after a restart national answers the same from its store and index.

use std::time::Duration;

use anyhow::{ensure, Result};
use backflow_node::localnet::{LocalNet, Transport};
use backflow_node::node::NodeHandle;
use backflow_protocol::catalog::{
    CatalogEntry, CatalogOrigin, DataFormat, DataGrade, DataItem, DataType, SharingAttribute,
    SharingMethod, UpdateFrequency,
};
use backflow_protocol::catalog_search::{SearchQuery, SharingFilter};
use common::{calendar, code, fast, wait_until};

mod common;

const CITY: &str = "4419";

fn entry(id: &str, name: &str, provider: &str, item: &str) -> CatalogEntry {
    CatalogEntry {
        id: id.into(),
        name: name.into(),
        data_items: vec![DataItem {
            name: item.into(),
            data_type: DataType::Text,
            description: format!("{item}（{name}）"),
        }],
        provider: provider.into(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Unconditional,
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: String::new(),
        classification: "社会保障".into(),
        grade: DataGrade::General,
    }
}

fn text(q: &str) -> SearchQuery {
    SearchQuery {
        text: q.into(),
        limit: 20,
        ..Default::default()
    }
}

async fn ids(node: &NodeHandle, query: SearchQuery) -> Result<Vec<String>> {
    let view = node.catalog_search(query).await?;
    Ok(view.hits.into_iter().map(|h| h.entry_id).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_stores_lists_and_searches_the_unified_catalog() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let regions: Vec<_> = ["0", "44", CITY].iter().map(|s| code(s)).collect();
    let mut net =
        LocalNet::start_with(&regions, dir.path(), fast(), Transport::Tcp, calendar()).await?;
    net.wait_connected(Duration::from_secs(30)).await?;
    let city = net.nodes[&code(CITY)].clone();
    let province = net.nodes[&code("44")].clone();
    city.catalog_submit(
        "市人社局".into(),
        vec![
            entry("shebao", "社会保险参保信息", "市人社局", "公民身份号码"),
            entry("jiuye", "就业登记信息", "市人社局", "就业状态"),
        ],
    )
    .await?;
    province
        .catalog_submit(
            "省公安厅".into(),
            vec![entry("huji", "户籍人口信息", "省公安厅", "公民身份号码")],
        )
        .await?;
    let national = net.nodes[&code("0")].clone();
    wait_until(
        "national to find the city's entry by a word of its name",
        Duration::from_secs(30),
        async || Ok(ids(&national, text("参保")).await? == ["shebao"]),
    )
    .await?;
    wait_until(
        "national to find both entries with a data item",
        Duration::from_secs(30),
        async || Ok(ids(&national, text("公民身份号码")).await?.len() == 2),
    )
    .await?;
    // Filters: the city's subtree, the provider, the sharing attribute.
    let in_city = SearchQuery {
        region: Some(code(CITY)),
        ..text("公民身份号码")
    };
    assert_eq!(ids(&national, in_city).await?, ["shebao"]);
    let by_provider = SearchQuery {
        provider: Some("省公安厅".into()),
        limit: 20,
        ..Default::default()
    };
    assert_eq!(ids(&national, by_provider).await?, ["huji"]);
    let not_shared = SearchQuery {
        sharing: Some(SharingFilter::NotShared),
        limit: 20,
        ..Default::default()
    };
    assert!(ids(&national, not_shared).await?.is_empty());
    // Text is text, never query syntax.
    assert!(ids(&national, text("name:* OR 1=1")).await?.is_empty());

    // The city holds only its subtree's catalog, yet searches the whole country: national
    // answers over the overlay; a search within the city is answered by the city itself.
    let country = city.catalog_search(text("户籍")).await?;
    assert_eq!(country.answered_by, "0");
    assert_eq!(country.hits.len(), 1);
    assert_eq!(country.hits[0].entry_id, "huji");
    assert_eq!(country.hits[0].region_name.as_deref(), Some("广东省"));
    let own = city
        .catalog_search(SearchQuery {
            region: Some(code(CITY)),
            ..text("参保")
        })
        .await?;
    assert_eq!((own.answered_by.as_str(), own.hits.len()), (CITY, 1));
    assert!(own.indexed_through.is_some());

    // The listing comes from the store, a page at a time.
    let first = national.catalogs(None, None, 1).await?;
    ensure!(first.len() == 1, "{first:?}");
    let after = CatalogOrigin {
        region: first[0].region.parse()?,
        department: first[0].department.clone(),
    };
    let second = national.catalogs(None, Some(after), 10).await?;
    ensure!(second.len() == 1, "{second:?}");
    ensure!(first[0].department != second[0].department);
    let city_only = national.catalogs(Some(code(CITY)), None, 10).await?;
    ensure!(city_only.len() == 1 && city_only[0].entries.len() == 2);

    // A later version of the entry replaces it in the search.
    city.catalog_submit(
        "市人社局".into(),
        vec![entry("shebao", "社会保险缴费信息", "市人社局", "缴费基数")],
    )
    .await?;
    wait_until(
        "the new version to replace the old in national's search",
        Duration::from_secs(30),
        async || Ok(ids(&national, text("缴费")).await? == ["shebao"]),
    )
    .await?;
    assert!(ids(&national, text("参保")).await?.is_empty());

    // After a restart: the same answers, from the store and the index on disk.
    drop((national, city, province));
    net.stop(code("0")).await?;
    net.restart(code("0")).await?;
    let national = net.nodes[&code("0")].clone();
    assert_eq!(ids(&national, text("缴费")).await?, ["shebao"]);
    assert!(ids(&national, text("参保")).await?.is_empty());
    ensure!(national.catalogs(None, None, 10).await?.len() == 2);
    drop(national);
    net.shutdown().await
}
