use std::sync::Arc;

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, DataFormat, DataGrade, DataItem,
    DataType, LegalBasis, LegalBasisKind, SharingAttribute, SharingMethod, SignedCatalogUpdate,
    UpdateFrequency,
};
use backflow_protocol::time::UnixMs;
use backflow_topology::RegionCode;
use ed25519_dalek::Signature;

use super::*;

fn code(text: &str) -> RegionCode {
    RegionCode::parse(text).unwrap()
}

fn entry(
    id: &str,
    name: &str,
    provider: &str,
    sharing: SharingFilter,
    items: &[&str],
) -> CatalogEntry {
    let (sharing, methods, conditions) = match sharing {
        SharingFilter::Unconditional => (
            SharingAttribute::Unconditional,
            vec![SharingMethod::ServiceApi],
            String::new(),
        ),
        SharingFilter::Conditional => (
            SharingAttribute::Conditional {
                scope: vec!["政务部门".into()],
                permitted_uses: vec!["履行法定职责".into()],
            },
            vec![SharingMethod::BatchExchange],
            "仅限履职使用".into(),
        ),
        SharingFilter::NotShared => (
            SharingAttribute::NotShared {
                reason: "涉及国家秘密".into(),
                legal_basis: vec![LegalBasis {
                    kind: LegalBasisKind::Law,
                    citation: "《中华人民共和国保守国家秘密法》".into(),
                }],
            },
            vec![],
            String::new(),
        ),
    };
    CatalogEntry {
        id: id.into(),
        name: name.into(),
        data_items: items
            .iter()
            .map(|n| DataItem {
                name: n.to_string(),
                data_type: DataType::Text,
                description: "说明".into(),
            })
            .collect(),
        provider: provider.into(),
        format: DataFormat::Table,
        update_frequency: UpdateFrequency::Daily,
        sharing,
        sharing_methods: methods,
        usage_conditions: conditions,
        classification: format!("政务/{provider}"),
        grade: DataGrade::General,
    }
}

/// A catalog version as the log holds it. The index does not verify signatures (the log holds
/// verified versions only), so a placeholder signature stands in.
fn signed(
    region: &str,
    department: &str,
    seq: u64,
    changes: Vec<CatalogChange>,
) -> SignedCatalogUpdate {
    let update = CatalogUpdate {
        origin: CatalogOrigin {
            region: code(region),
            department: department.into(),
        },
        seq,
        issued_at: UnixMs(1_767_225_600_000),
        changes,
    };
    update.validate().expect("test update is valid");
    SignedCatalogUpdate {
        update,
        signer: Vec::new(),
        signature: Signature::from_bytes(&[0; 64]),
    }
}

fn add(e: CatalogEntry) -> CatalogChange {
    CatalogChange::Add(Arc::new(e))
}

fn words(index: &CatalogIndex, text: &str) -> Vec<String> {
    index
        .query_words(text)
        .unwrap()
        .into_iter()
        .map(|w| w.word)
        .collect()
}

fn text(t: &str) -> CatalogQuery {
    CatalogQuery {
        text: t.into(),
        limit: 20,
        ..Default::default()
    }
}

fn ids(index: &CatalogIndex, query: &CatalogQuery) -> Vec<String> {
    let mut ids: Vec<String> = index
        .search(query)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.entry_id)
        .collect();
    ids.sort();
    ids
}

/// Two counties of 东城区 and 西城区 (Beijing), a township under 东城区, and a city.
fn sample() -> CatalogIndex {
    use SharingFilter::*;
    let mut index = CatalogIndex::in_memory().unwrap();
    let updates = [
        signed(
            "110101",
            "公安局",
            1,
            vec![
                add(entry(
                    "a1",
                    "公安局行政许可信息",
                    "公安局",
                    Unconditional,
                    &["统一社会信用代码", "许可证号"],
                )),
                add(entry(
                    "a2",
                    "公安局户籍登记信息",
                    "公安局",
                    Conditional,
                    &["公民身份号码", "住址"],
                )),
            ],
        ),
        signed(
            "110101",
            "民政局",
            1,
            vec![add(entry(
                "m1",
                "民政局婚姻登记信息",
                "民政局",
                NotShared,
                &["公民身份号码"],
            ))],
        ),
        signed(
            "110101001",
            "公安局",
            1,
            vec![add(entry(
                "t1",
                "派出所行政许可信息",
                "公安局",
                Unconditional,
                &["办理时间"],
            ))],
        ),
        signed(
            "110102",
            "公安局",
            1,
            vec![add(entry(
                "x1",
                "公安局行政处罚信息",
                "公安局",
                Conditional,
                &["处罚决定书文号"],
            ))],
        ),
        signed(
            "4419",
            "市场监督管理局",
            1,
            vec![add(entry(
                "s1",
                "市场主体登记信息",
                "市场监督管理局",
                Unconditional,
                &["统一社会信用代码"],
            ))],
        ),
    ];
    for (i, u) in updates.iter().enumerate() {
        index.apply(i as u64 + 1, u).unwrap();
    }
    index.commit().unwrap();
    index
}

#[test]
fn add_update_withdraw_visible_after_commit() {
    let mut index = CatalogIndex::in_memory().unwrap();
    assert_eq!(index.applied_through(), 0);
    let u1 = signed(
        "110101",
        "公安局",
        1,
        vec![add(entry(
            "e1",
            "公安局行政许可信息",
            "公安局",
            SharingFilter::Unconditional,
            &["名称"],
        ))],
    );
    index.apply(1, &u1).unwrap();
    // Buffered: not visible yet.
    assert_eq!(index.len(), 0);
    assert_eq!(index.applied_through(), 0);
    index.commit().unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index.applied_through(), 1);
    assert_eq!(ids(&index, &text("行政许可")), ["e1"]);

    let u2 = signed(
        "110101",
        "公安局",
        2,
        vec![CatalogChange::Update(Arc::new(entry(
            "e1",
            "公安局出入境证件信息",
            "公安局",
            SharingFilter::Unconditional,
            &["名称"],
        )))],
    );
    index.apply(2, &u2).unwrap();
    index.commit().unwrap();
    assert_eq!(index.len(), 1, "update replaces, not duplicates");
    assert!(ids(&index, &text("行政许可")).is_empty());
    let r = index.search(&text("出入境")).unwrap();
    assert_eq!(r.total, 1);
    let hit = &r.hits[0];
    assert_eq!(
        (
            hit.region,
            hit.department.as_str(),
            hit.entry_id.as_str(),
            hit.name.as_str()
        ),
        (code("110101"), "公安局", "e1", "公安局出入境证件信息")
    );
    assert!(hit.score > 0.0);

    // The same id in another department or region is another entry.
    let other = signed(
        "110102",
        "公安局",
        1,
        vec![add(entry(
            "e1",
            "公安局出入境证件信息",
            "公安局",
            SharingFilter::Unconditional,
            &["名称"],
        ))],
    );
    index.apply(3, &other).unwrap();
    let withdraw = signed(
        "110101",
        "公安局",
        3,
        vec![CatalogChange::Withdraw {
            id: "e1".into(),
            reason: "停止采集".into(),
        }],
    );
    index.apply(4, &withdraw).unwrap();
    index.commit().unwrap();
    assert_eq!(index.applied_through(), 4);
    let r = index.search(&text("出入境")).unwrap();
    assert_eq!(r.total, 1);
    assert_eq!(r.hits[0].region, code("110102"));

    // Replaying old log entries does not roll anything back.
    index.apply(1, &u1).unwrap();
    index.apply(2, &u2).unwrap();
    index.commit().unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index.applied_through(), 4);
    assert!(matches!(index.apply(0, &u1), Err(IndexError::ZeroLogIndex)));
}

/// An Add of a key that is already there (a log the catalog would not produce) still replaces,
/// whether the earlier document is committed or only applied.
#[test]
fn add_of_an_existing_key_replaces() {
    let mut index = CatalogIndex::in_memory().unwrap();
    let version = |seq, name: &str| {
        signed(
            "110101",
            "公安局",
            seq,
            vec![add(entry(
                "e1",
                name,
                "公安局",
                SharingFilter::Unconditional,
                &["名称"],
            ))],
        )
    };
    index.apply(1, &version(1, "公安局户籍登记信息")).unwrap();
    index.commit().unwrap();
    index.apply(2, &version(2, "公安局行政许可信息")).unwrap();
    index.commit().unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(ids(&index, &text("行政许可")), ["e1"]);
    // Within one batch: add, add again, withdraw, add.
    index.apply(3, &version(3, "公安局出入境证件信息")).unwrap();
    index.apply(4, &version(4, "公安局治安管理信息")).unwrap();
    let withdraw = signed(
        "110101",
        "公安局",
        5,
        vec![CatalogChange::Withdraw {
            id: "e1".into(),
            reason: "停止采集".into(),
        }],
    );
    index.apply(5, &withdraw).unwrap();
    index.apply(6, &version(6, "公安局交通管理信息")).unwrap();
    index.commit().unwrap();
    assert_eq!(index.len(), 1);
    let r = index.search(&text("公安局")).unwrap();
    assert_eq!(r.total, 1);
    assert_eq!(r.hits[0].name, "公安局交通管理信息");
}

#[test]
fn reopen_from_disk_keeps_documents_and_applied_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog-index");
    {
        let mut index = CatalogIndex::open(&path).unwrap();
        assert_eq!(index.applied_through(), 0);
        let u = signed(
            "110101",
            "公安局",
            1,
            vec![
                add(entry(
                    "e1",
                    "公安局行政许可信息",
                    "公安局",
                    SharingFilter::Unconditional,
                    &["名称"],
                )),
                add(entry(
                    "e2",
                    "公安局户籍登记信息",
                    "公安局",
                    SharingFilter::Conditional,
                    &["名称"],
                )),
            ],
        );
        index.apply(7, &u).unwrap();
        index.commit().unwrap();
        // Applied but not committed: lost on close, replayed from applied_through + 1.
        let lost = signed(
            "110101",
            "民政局",
            1,
            vec![add(entry(
                "m1",
                "民政局婚姻登记信息",
                "民政局",
                SharingFilter::Unconditional,
                &["名称"],
            ))],
        );
        index.apply(8, &lost).unwrap();
        index.close().unwrap();
    }
    let index = CatalogIndex::open(&path).unwrap();
    assert_eq!(index.applied_through(), 7);
    assert_eq!(index.len(), 2);
    assert_eq!(ids(&index, &text("登记")), ["e2"]);
    assert_eq!(index.dir(), Some(path.as_path()));

    // A second writer on the same directory is refused, naming it.
    let err = CatalogIndex::open(&path).err().expect("locked");
    assert!(matches!(err, IndexError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn corrupt_index_is_an_error_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta.json"), b"{ not json").unwrap();
    let err = CatalogIndex::open(dir.path()).err().expect("corrupt");
    assert!(matches!(err, IndexError::Unreadable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn index_of_another_schema_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = tantivy::schema::Schema::builder();
    b.add_text_field("title", tantivy::schema::TEXT);
    tantivy::Index::create_in_dir(dir.path(), b.build()).unwrap();
    let err = CatalogIndex::open(dir.path()).err().expect("incompatible");
    assert!(matches!(err, IndexError::Incompatible { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn chinese_segmentation_finds_sub_phrases() {
    let index = sample();
    assert_eq!(ids(&index, &text("行政许可")), ["a1", "t1"]);
    assert_eq!(ids(&index, &text("许可")), ["a1", "t1"]);
    // Every word must match, in any text field: t1's classification (数据分类, "政务/公安局")
    // names its provider, so it is found too, below a1 whose name has both words.
    let r = index.search(&text("公安局行政许可")).unwrap();
    assert_eq!(r.total, 2);
    assert_eq!(r.hits[0].entry_id, "a1");
    assert!(r.hits[0].score > r.hits[1].score);
    assert_eq!(ids(&index, &text("公安局 行政许可")), ["a1", "t1"]);
    assert_eq!(ids(&index, &text("公安局行政处罚")), ["x1"]);
    assert_eq!(ids(&index, &text("公安")), ["a1", "a2", "t1", "x1"]);
    assert_eq!(ids(&index, &text("婚姻登记")), ["m1"]);
    assert!(ids(&index, &text("婚姻 行政许可")).is_empty());
    // Data item names (数据项) are searched too.
    assert_eq!(ids(&index, &text("公民身份号码")), ["a2", "m1"]);
    assert_eq!(ids(&index, &text("统一社会信用代码")), ["a1", "s1"]);
    assert_eq!(ids(&index, &text("登记")), ["a2", "m1", "s1"]);
    // ASCII is case-insensitive.
    assert_eq!(words(&index, "API 接口"), ["api", "接口"]);
    // A word the entry's text segmented differently is found by its parts.
    let w = index.query_words("社会保障").unwrap();
    assert_eq!(
        (w[0].word.as_str(), w[0].parts.clone()),
        ("社会保障", vec!["社会".to_string(), "保障".to_string()])
    );
    assert!(
        index.query_words("公安局").unwrap()[0].parts.is_empty(),
        "局 is no word: no cover"
    );
}

#[test]
fn filters_by_provider_sharing_and_region_subtree() {
    let index = sample();
    let q = |provider: Option<&str>, sharing: Option<SharingFilter>, region: Option<&str>| {
        CatalogQuery {
            provider: provider.map(str::to_string),
            sharing,
            region: region.map(code),
            limit: 20,
            ..Default::default()
        }
    };
    assert_eq!(ids(&index, &q(Some("民政局"), None, None)), ["m1"]);
    assert_eq!(
        ids(&index, &q(Some("公安"), None, None)),
        Vec::<String>::new(),
        "exact provider"
    );
    assert_eq!(
        ids(&index, &q(None, Some(SharingFilter::NotShared), None)),
        ["m1"]
    );
    assert_eq!(
        ids(&index, &q(None, Some(SharingFilter::Conditional), None)),
        ["a2", "x1"]
    );
    // A township's entries are under its county, and not under another county.
    assert_eq!(
        ids(&index, &q(None, None, Some("110101"))),
        ["a1", "a2", "m1", "t1"]
    );
    assert_eq!(ids(&index, &q(None, None, Some("110102"))), ["x1"]);
    assert_eq!(ids(&index, &q(None, None, Some("110101001"))), ["t1"]);
    assert_eq!(
        ids(&index, &q(None, None, Some("11"))),
        ["a1", "a2", "m1", "t1", "x1"]
    );
    assert_eq!(ids(&index, &q(None, None, Some("44"))), ["s1"]);
    assert_eq!(ids(&index, &q(None, None, Some("0"))).len(), 6);
    assert!(ids(&index, &q(None, None, Some("12"))).is_empty());
    // Combined with text and each other.
    let mut combined = q(
        Some("公安局"),
        Some(SharingFilter::Unconditional),
        Some("110101"),
    );
    combined.text = "行政许可".into();
    let r = index.search(&combined).unwrap();
    assert_eq!(r.total, 2);
    assert!(r.hits.iter().all(|h| h.score > 0.0));
    combined.region = Some(code("110102"));
    assert_eq!(index.search(&combined).unwrap().total, 0);
    // Empty query: everything, score 0.
    let all = index.search(&q(None, None, None)).unwrap();
    assert_eq!(all.total, 6);
    assert_eq!(index.len(), 6);
}

#[test]
fn paging_and_count_only() {
    let index = sample();
    let mut q = CatalogQuery {
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    for offset in [0, 2, 4, 6] {
        q.offset = offset;
        let r = index.search(&q).unwrap();
        assert_eq!(r.total, 6);
        seen.extend(r.hits.into_iter().map(|h| h.entry_id));
    }
    seen.sort();
    assert_eq!(seen, ["a1", "a2", "m1", "s1", "t1", "x1"]);
    q.limit = 0;
    q.text = "公安".into();
    let r = index.search(&q).unwrap();
    assert_eq!((r.total, r.hits.len()), (4, 0));
}

#[test]
fn limits_are_errors() {
    let index = sample();
    let limit_of = |q: CatalogQuery| match index.search(&q) {
        Err(IndexError::Limit { limit, got, max }) => {
            assert!(got > max);
            limit
        }
        other => panic!("expected a limit error, got {other:?}"),
    };
    assert_eq!(
        limit_of(CatalogQuery {
            limit: HITS_MAX + 1,
            ..text("公安")
        }),
        QueryLimit::Hits
    );
    assert_eq!(
        limit_of(CatalogQuery {
            limit: usize::MAX,
            ..text("公安")
        }),
        QueryLimit::Hits
    );
    assert_eq!(
        limit_of(CatalogQuery {
            offset: OFFSET_MAX + 1,
            ..text("公安")
        }),
        QueryLimit::Offset
    );
    assert_eq!(limit_of(text(&"公".repeat(100))), QueryLimit::TextBytes);
    let many_words: String = (0..40).map(|i| format!("w{i} ")).collect();
    assert!(many_words.len() <= QUERY_TEXT_BYTES_MAX);
    assert_eq!(limit_of(text(&many_words)), QueryLimit::Terms);
    assert_eq!(
        limit_of(CatalogQuery {
            provider: Some("局".repeat(200)),
            ..text("")
        }),
        QueryLimit::ProviderBytes
    );
    let err = index
        .search(&CatalogQuery {
            limit: 101,
            ..text("")
        })
        .unwrap_err();
    assert!(err.to_string().contains("HITS_MAX"), "{err}");
    // At the bounds: fine.
    index
        .search(&CatalogQuery {
            limit: HITS_MAX,
            offset: OFFSET_MAX,
            ..text(&"公".repeat(QUERY_TEXT_BYTES_MAX / 3))
        })
        .unwrap();
}

#[test]
fn hostile_query_text_is_text_not_syntax() {
    let mut index = sample();
    let syntax = [
        "name:* OR 1=1",
        "*",
        "name:公安局",
        "公安* OR 民政*",
        "region_path:0",
        "\"公安局\"~5",
        "(公安 OR 民政) AND NOT 婚姻",
        "公安^100",
        "key:/.*/",
        "[a TO z]",
    ];
    for q in syntax {
        // No entry has all of these words (name, or, key, 100, ...): nothing matches, where a
        // query parser would have matched everything or a field.
        let r = index.search(&text(q)).unwrap();
        assert_eq!(r.total, 0, "{q:?} matched");
    }
    assert_eq!(
        index.search(&text("*")).unwrap().total,
        0,
        "no words: nothing"
    );
    assert_eq!(
        index.search(&text("  ")).unwrap().total,
        6,
        "blank: no text condition"
    );
    // ... and the words are searched as words: an entry that has them is found.
    let u = signed(
        "110105",
        "数据局",
        1,
        vec![add(entry(
            "n1",
            "Name OR 1 接口",
            "数据局",
            SharingFilter::Unconditional,
            &["名称"],
        ))],
    );
    index.apply(100, &u).unwrap();
    index.commit().unwrap();
    assert_eq!(ids(&index, &text("name:* OR 1=1")), ["n1"]);
    assert_eq!(words(&index, "name:* OR 1=1"), ["name", "or", "1"]);
}

#[allow(dead_code)]
#[path = "../benches/support/vocab.rs"]
mod vocab;

/// Over the simulator's whole vocabulary: an entry named department + topic is found by the
/// whole name, by the department, by the topic, by department + topic without 信息/数据, and
/// by each data item name.
#[test]
fn vocabulary_round_trip() {
    let mut index = CatalogIndex::in_memory().unwrap();
    let mut log = 0;
    for d in vocab::DEPARTMENTS {
        let changes = vocab::TOPICS
            .iter()
            .enumerate()
            .map(|(t, topic)| {
                let items: Vec<&str> = (0..3)
                    .map(|k| vocab::ITEMS[(t + k) % vocab::ITEMS.len()].0)
                    .collect();
                add(entry(
                    &format!("{t}"),
                    &format!("{d}{topic}"),
                    d,
                    SharingFilter::Unconditional,
                    &items,
                ))
            })
            .collect();
        log += 1;
        index.apply(log, &signed("110101", d, 1, changes)).unwrap();
    }
    index.commit().unwrap();
    let mut misses = Vec::new();
    for d in vocab::DEPARTMENTS {
        for (t, topic) in vocab::TOPICS.iter().enumerate() {
            let short = topic.trim_end_matches("信息").trim_end_matches("数据");
            let mut queries = vec![
                format!("{d}{topic}"),
                d.to_string(),
                topic.to_string(),
                format!("{d}{short}"),
                format!("{d} {short}"),
            ];
            queries
                .extend((0..3).map(|k| vocab::ITEMS[(t + k) % vocab::ITEMS.len()].0.to_string()));
            for q in queries {
                let query = CatalogQuery {
                    text: q.clone(),
                    provider: Some(d.to_string()),
                    limit: HITS_MAX,
                    ..Default::default()
                };
                let found = index.search(&query).unwrap();
                if !found.hits.iter().any(|h| h.entry_id == t.to_string()) {
                    misses.push(format!(
                        "{q:?} → {:?} misses {d}{topic}",
                        index.query_words(&q).unwrap()
                    ));
                }
            }
        }
    }
    assert!(
        misses.is_empty(),
        "{} misses:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

/// Sub-phrases a user would type, where jieba segments the name differently from the query.
#[test]
fn sub_phrases_across_segmentation() {
    let mut index = CatalogIndex::in_memory().unwrap();
    let names = [
        "人力资源和社会保障局专项资金拨付信息",
        "住房和城乡建设局项目备案信息",
        "政务服务和数据管理局服务事项目录",
        "卫生健康委员会监测数据",
        "退役军人事务局信用评价信息",
        "市场监督管理局行政许可信息",
    ];
    let changes = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            add(entry(
                &i.to_string(),
                n,
                "x",
                SharingFilter::Unconditional,
                &["名称"],
            ))
        })
        .collect();
    index.apply(1, &signed("110101", "x", 1, changes)).unwrap();
    index.commit().unwrap();
    let cases = [
        ("社会保障", 0),
        ("人力资源社会保障", 0),
        ("资金拨付", 0),
        ("城乡建设", 1),
        ("建设局", 1),
        ("数据管理", 2),
        ("服务事项", 2),
        ("卫生健康", 3),
        ("委员会", 3),
        ("退役军人", 4),
        ("信用评价", 4),
        ("监督管理", 5),
        ("许可信息", 5),
    ];
    for (q, want) in cases {
        assert_eq!(
            ids(&index, &text(q)),
            [want.to_string()],
            "{q}: {:?}",
            index.query_words(q).unwrap()
        );
    }
    // An abbreviation is not a sub-phrase (市场监管 for 市场监督管理): not found.
    assert!(ids(&index, &text("市场监管")).is_empty());
}
