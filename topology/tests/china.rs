//! The embedded national table, checked against its source files and the tree invariants.

use std::path::Path;

use backflow_topology::{
    CodeError, Fanout, Level, RegionCode, RegionKind, Topology, TopologyError,
};
use proptest::prelude::*;

fn code(text: &str) -> RegionCode {
    RegionCode::parse(text).unwrap()
}

/// Data rows (header excluded) of a division file.
fn rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn counts_per_level_equal_the_data_files() {
    let china = Topology::china();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    // The shared originals, where this checkout has them beside it (CI and developers do).
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/divisions");
    for (level, file, expected) in [
        (Level::Province, "provinces.csv", 31),
        (Level::City, "cities.csv", 342),
        (Level::County, "areas.csv", 2_978),
        (Level::Township, "streets.csv", 41_352),
    ] {
        assert_eq!(china.count(level), expected, "{level}");
        assert_eq!(china.count(level), rows(&data.join(file)), "{file}");
        if shared.exists() {
            assert_eq!(
                china.count(level),
                rows(&shared.join(file)),
                "shared {file}"
            );
        }
    }
    assert_eq!(china.count(Level::National), 1);
    assert_eq!(china.len(), 44_704);
    assert_eq!(china.subtree_size(RegionCode::NATIONAL), 44_704);
}

#[test]
fn every_township_has_a_full_chain_with_the_right_levels() {
    let china = Topology::china();
    let mut townships = 0;
    for region in china.regions() {
        if region.level() != Level::Township {
            continue;
        }
        townships += 1;
        let path = region.code.path();
        assert_eq!(path.len(), 5, "{}", region.code);
        for (depth, c) in path.iter().enumerate() {
            assert_eq!(c.level(), Level::ALL[depth], "{}", region.code);
            assert!(
                china.get(*c).is_some(),
                "{} missing ancestor {c}",
                region.code
            );
        }
        // The table's own parent columns agree with prefix arithmetic (checked via children).
        let parent = region.code.parent().unwrap();
        assert!(china.children(parent).contains(&region.code));
    }
    assert_eq!(townships, 41_352);
}

#[test]
fn every_non_township_has_children() {
    let china = Topology::china();
    for region in china.regions() {
        if region.level() < Level::Township {
            assert!(
                !china.children(region.code).is_empty(),
                "{} {} has no children",
                region.code,
                region.name
            );
        }
    }
}

#[test]
fn parent_columns_of_the_source_match_prefix_arithmetic() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    for (file, parent_col) in [("cities.csv", 2), ("areas.csv", 2), ("streets.csv", 2)] {
        let text = std::fs::read_to_string(data.join(file)).unwrap();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let child = code(fields[0]);
            assert_eq!(child.parent().unwrap(), code(fields[parent_col]), "{line}");
        }
    }
}

#[test]
fn municipalities_have_placeholder_cities() {
    let china = Topology::china();
    for c in ["1101", "1201", "3101", "5001", "5002"] {
        let region = china.lookup(c).unwrap();
        assert_eq!(region.kind, RegionKind::MunicipalDistricts, "{c}");
        assert_eq!(region.level(), Level::City);
    }
    assert_eq!(china.children(code("11")), &[code("1101")]);
    assert_eq!(
        china.path_names(code("110101001")),
        ["中华人民共和国", "北京市", "市辖区", "东城区", "东华门街道"]
    );
}

#[test]
fn directly_administered_counties_hang_under_a_placeholder_city() {
    let china = Topology::china();
    for c in ["4190", "4290", "4690", "6590"] {
        let region = china.lookup(c).unwrap();
        assert_eq!(region.kind, RegionKind::DirectlyAdministered, "{c}");
    }
    let jiyuan = china.lookup("419001").unwrap();
    assert_eq!(jiyuan.name, "济源市");
    assert_eq!(jiyuan.code.parent(), Some(code("4190")));
}

#[test]
fn cities_without_counties_have_a_county_standing_for_the_city() {
    let china = Topology::china();
    for (city, county, name) in [
        ("4419", "441900", "东莞市"),
        ("4420", "442000", "中山市"),
        ("4604", "460400", "儋州市"),
        ("6202", "620201", "嘉峪关市"),
    ] {
        let c = china.lookup(county).unwrap();
        assert_eq!(c.kind, RegionKind::CityAsCounty, "{county}");
        assert_eq!(c.name, name);
        assert_eq!(china.children(code(city)), &[code(county)]);
        assert!(china.children(code(county)).len() > 1);
    }
    // Same padded digits, different nodes: the level is part of the code.
    assert_ne!(code("4419"), code("441900"));
    let kinmen = china.lookup("350527000").unwrap();
    assert_eq!(kinmen.kind, RegionKind::TownshipPlaceholder);
}

#[test]
fn malformed_and_unknown_codes_are_clear_errors() {
    let china = Topology::china();
    assert!(matches!(
        china.lookup("abc"),
        Err(TopologyError::Code(CodeError::NonDigit(_)))
    ));
    assert!(matches!(
        china.lookup("12345"),
        Err(TopologyError::Code(CodeError::BadLength(_, 5)))
    ));
    assert!(matches!(
        china.lookup(""),
        Err(TopologyError::Code(CodeError::Empty))
    ));
    assert_eq!(
        china.lookup("99").unwrap_err(),
        TopologyError::Unknown(code("99"))
    );
    assert_eq!(
        china.lookup("110101999").unwrap_err().to_string(),
        "unknown region code 110101999"
    );
    assert!(
        china.lookup("110101001001").is_err(),
        "a village is not a node"
    );
}

#[test]
fn villages_resolve_to_their_township() {
    let china = Topology::china();
    assert_eq!(
        china.township_of("110101001001").unwrap(),
        code("110101001")
    );
    assert_eq!(china.township_of("110101001").unwrap(), code("110101001"));
    assert!(matches!(
        china.township_of("999999999001"),
        Err(TopologyError::Unknown(_))
    ));
    assert!(
        china.township_of("110101").is_err(),
        "a county is not a record location"
    );
    assert!(china.township_of("11010100100").is_err());
}

#[test]
fn village_file_rolls_up_to_known_townships() {
    // Every village in the shared file resolves; skipped where the file is not beside us.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/divisions/villages.csv.gz");
    if !path.exists() {
        eprintln!("SKIPPED: {} not present", path.display());
        return;
    }
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: gzip not available");
        return;
    };
    let text = String::from_utf8(out.stdout).unwrap();
    let china = Topology::china();
    let mut n = 0;
    for line in text.lines().skip(1) {
        let village = line.split(',').next().unwrap();
        china
            .township_of(village)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        // The embedded list (data/villages.txt) is this file, exactly: no village missing, and
        // (with the count below) none added.
        let code: u64 = village.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            backflow_topology::is_known_village(code),
            "{village} not embedded"
        );
        n += 1;
    }
    assert!(n > 600_000, "{n} villages");
    assert_eq!(
        n,
        backflow_topology::VILLAGES_TOTAL,
        "embedded list and file differ in size"
    );
}

#[test]
fn tree_queries() {
    let china = Topology::china();
    let t = code("441900003");
    let ancestors: Vec<String> = t.ancestors().map(|c| c.to_string()).collect();
    assert_eq!(ancestors, ["441900", "4419", "44", "0"]);
    assert_eq!(
        china.descendants(code("4419")).len() + 1,
        china.subtree_size(code("4419"))
    );
    let gd_townships = china.townships_under(code("44"));
    assert!(gd_townships
        .iter()
        .all(|c| code("44").contains(*c) && c.level() == Level::Township));
    assert_eq!(
        gd_townships.len(),
        china
            .descendants(code("44"))
            .iter()
            .filter(|c| c.level() == Level::Township)
            .count()
    );
    // Art. 28: a dispute between two townships of different provinces goes to national.
    assert_eq!(
        t.lowest_common_ancestor(code("110101001")),
        RegionCode::NATIONAL
    );
    assert_eq!(t.lowest_common_ancestor(code("441900004")), code("441900"));
}

#[test]
fn synthetic_trees_are_deterministic_and_bounded() {
    let a = Topology::synthetic(Fanout::fixed(3, 4, 5, 6), 1).unwrap();
    assert_eq!(a.len(), 1 + 3 + 12 + 60 + 360);
    let f = Fanout {
        province: (2, 5),
        city: (1, 4),
        county: (1, 3),
        township: (2, 9),
    };
    let b1 = Topology::synthetic(f, 42).unwrap();
    let b2 = Topology::synthetic(f, 42).unwrap();
    assert_eq!(b1.codes(), b2.codes());
    for region in b1.regions() {
        if region.level() < Level::Township {
            let n = b1.children(region.code).len() as u32;
            let (min, max) =
                [f.province, f.city, f.county, f.township][region.level().depth() as usize];
            assert!((min..=max).contains(&n));
        }
    }
    assert!(matches!(
        Topology::synthetic(Fanout::fixed(90, 1, 1, 1), 0),
        Err(TopologyError::Fanout(_))
    ));
    assert!(matches!(
        Topology::synthetic(
            Fanout {
                province: (3, 2),
                ..f
            },
            0
        ),
        Err(TopologyError::Fanout(_))
    ));
}

fn any_region() -> impl Strategy<Value = RegionCode> {
    let codes = Topology::china().codes();
    (0..codes.len()).prop_map(move |i| codes[i])
}

proptest! {
    #[test]
    fn contains_ancestors_and_lca_agree(a in any_region(), b in any_region()) {
        let china = Topology::china();
        // contains ⇔ a is b or on b's ancestor chain.
        let on_chain = a == b || b.ancestors().any(|x| x == a);
        prop_assert_eq!(a.contains(b), on_chain);
        // The LCA contains both, and no child of it on the way down contains both.
        let lca = a.lowest_common_ancestor(b);
        prop_assert!(lca.contains(a) && lca.contains(b));
        prop_assert_eq!(lca, b.lowest_common_ancestor(a));
        for child in china.children(lca) {
            prop_assert!(!(child.contains(a) && child.contains(b)));
        }
        prop_assert_eq!(a.contains(b), lca == a);
        // Every ancestor is in the table, and the path ends at the node.
        prop_assert!(a.ancestors().all(|x| china.contains_code(x)));
        prop_assert_eq!(*a.path().last().unwrap(), a);
    }

    #[test]
    fn parsing_never_panics(s in "\\PC{0,14}") {
        let _ = RegionCode::parse(&s);
        let _ = RegionCode::parse_location(&s);
        let _ = Topology::china().lookup(&s);
        let _ = Topology::china().township_of(&s);
    }

    #[test]
    fn code_display_parse_roundtrip(a in any_region()) {
        prop_assert_eq!(RegionCode::parse(&a.to_string()).unwrap(), a);
    }
}
