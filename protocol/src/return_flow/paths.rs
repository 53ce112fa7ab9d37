//! Who serves whom on the data plane for one manifest, under the network's [`DataRouting`]:
//! a region's data parent, the nodes a node serves, whether a partition passes through a
//! node, and where a node may receive from (skip-level fallback included).

use backflow_topology::RegionCode;

use super::DataRouting;
use crate::manifest::Manifest;
use crate::region_tree::RegionTree;

/// The node that serves `r` under `routing` (and takes its receipts): its ancestor at the
/// routing's upstream tier if that may serve it, else the nearest that may (its parent in
/// the scope, or the publisher). `None` at the top.
pub(super) fn data_parent(
    routing: &DataRouting,
    r: RegionCode,
    m: &Manifest,
) -> Option<RegionCode> {
    if m.is_delivery() {
        // Only the requester's node receives a delivery, only from the provider's.
        return (r == m.scope).then_some(m.publisher.region);
    }
    let may_serve =
        |a: RegionCode| a != r && a.contains(r) && (m.scope.contains(a) || a == m.publisher.region);
    if !routing.is_tree() {
        if let Some(a) = routing
            .upstream_level(r.level())
            .and_then(|l| r.ancestor_at(l))
            .filter(|a| may_serve(*a))
        {
            return Some(a);
        }
    }
    match r.parent() {
        Some(p) if m.scope.contains(p) => Some(p),
        _ => may_serve(m.publisher.region).then_some(m.publisher.region),
    }
}

/// Whether partition `r` (inside `x`) is delivered through `x`: `x` is on the chain of data
/// parents from `r` up. Always on the strict tree; not for the tiers a direct link skips.
pub(super) fn served_via(
    routing: &DataRouting,
    m: &Manifest,
    x: RegionCode,
    r: RegionCode,
) -> bool {
    debug_assert!(x.contains(r));
    if routing.is_tree() || m.is_delivery() {
        return true;
    }
    let mut c = r;
    // Each step climbs at least one tier, so this ends within five.
    loop {
        if c == x {
            return true;
        }
        match data_parent(routing, c, m) {
            Some(p) if x.contains(p) => c = p,
            _ => return false,
        }
    }
}

/// The nodes `x` serves in `tree` for `m`: its region children on the strict tree (or the
/// tree's root, when `x` is a publisher above the scope), plus direct-link descendants.
pub(super) fn data_children(
    routing: &DataRouting,
    tree: &RegionTree,
    m: &Manifest,
    x: RegionCode,
) -> Vec<RegionCode> {
    let in_tree = tree.subtree_hash(x).is_some();
    if routing.is_tree() || m.is_delivery() {
        // (A delivery's tree is its one partition: the publisher serves it, nobody else.)
        return if in_tree {
            tree.children_with_data(x).collect()
        } else {
            vec![tree.root()]
        };
    }
    let reach = routing.reach(x.level());
    let mut out = Vec::new();
    let mut stack: Vec<RegionCode> = if in_tree {
        tree.children_with_data(x).collect()
    } else {
        vec![tree.root()]
    };
    while let Some(d) = stack.pop() {
        if data_parent(routing, d, m) == Some(x) {
            out.push(d);
        }
        if d.level() < reach {
            stack.extend(tree.children_with_data(d));
        }
    }
    out.sort_unstable();
    out
}

/// Where `me` may receive `manifest` from, nearest first: its ancestors inside the scope, then
/// the publisher's region (which holds everything).
pub(super) fn valid_sources(me: RegionCode, m: &crate::manifest::Manifest) -> Vec<RegionCode> {
    if m.is_delivery() {
        return if me == m.scope {
            vec![m.publisher.region]
        } else {
            Vec::new()
        };
    }
    let mut v: Vec<RegionCode> = me.ancestors().filter(|a| m.scope.contains(*a)).collect();
    if !v.contains(&m.publisher.region)
        && m.publisher.region.contains(me)
        && m.publisher.region != me
    {
        v.push(m.publisher.region);
    }
    v
}
