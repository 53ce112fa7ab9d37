//! A delivery's time line (送达时间线) as inline SVG: regions delivered, summed over the child
//! regions by each one's latest receipt, against the time since the version was issued. The
//! node keeps each region's latest receipt only, so a child's step sits where its latest
//! receipt arrived — for a delivered child, when it completed.

use maud::{html, Markup};
use serde_json::Value;

use crate::i18n::{Lang, Msg};

const WIDTH: u64 = 480;
const HEIGHT: u64 = 120;
/// Room for the axis labels.
const LEFT: u64 = 40;
const BOTTOM: u64 = 18;

/// The chart for `children` (the node's `ChildStatus` rows); nothing when no receipt came yet.
pub fn chart(l: Lang, issued_at: u64, children: &[Value], now: u64) -> Markup {
    let mut steps: Vec<(u64, u64)> = children
        .iter()
        .filter_map(|c| {
            let at = c["last_receipt_at"].as_u64()?;
            let delivered = c["regions_delivered"].as_u64().filter(|d| *d > 0)?;
            Some((at.saturating_sub(issued_at), delivered))
        })
        .collect();
    if steps.is_empty() {
        return html! {};
    }
    steps.sort_unstable();
    let total: u64 = children
        .iter()
        .map(|c| c["regions_expected"].as_u64().unwrap_or(0))
        .sum::<u64>()
        .max(1);
    let last = steps.last().map_or(0, |s| s.0);
    // The x axis ends at the last receipt or now, whichever is later (a stuck delivery shows
    // its flat tail), but at least a second.
    let span = last.max(now.saturating_sub(issued_at)).max(1_000);
    let (w, h) = (WIDTH - LEFT, HEIGHT - BOTTOM);
    let x = |t: u64| LEFT + t.min(span) * w / span;
    let y = |d: u64| h - d.min(total) * h / total;
    let mut path = format!("M{} {}", x(0), y(0));
    let mut sum = 0;
    for (t, d) in &steps {
        sum += d;
        path.push_str(&format!(" H{} V{}", x(*t), y(sum)));
    }
    path.push_str(&format!(" H{}", x(span)));
    html! {
        figure {
            figcaption { (l.t(Msg::Timeline)) }
            svg.timeline width=(WIDTH) height=(HEIGHT) viewBox={"0 0 " (WIDTH) " " (HEIGHT)}
                role="img" aria-label=(l.t(Msg::Timeline)) {
                line.axis x1=(LEFT) y1=(h) x2=(WIDTH) y2=(h) {}
                line.axis x1=(LEFT) y1="0" x2=(LEFT) y2=(h) {}
                path.step d=(path) {}
                text x="2" y="11" { (total) }
                text x="2" y=(h) { "0" }
                text x=(LEFT) y=(HEIGHT - 4) { "0" }
                text x=(WIDTH - 2) y=(HEIGHT - 4) text-anchor="end" { (duration(l, span)) }
            }
            p.muted { (l.t(Msg::TimelineHint)) }
        }
    }
}

/// A span of time, short: "850 ms", "1.7 秒", "12 分钟", "3 小时".
pub fn duration(l: Lang, ms: u64) -> String {
    let zh = matches!(l, Lang::Zh);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        let tenths = ms / 100;
        let unit = if zh { "秒" } else { "s" };
        format!("{}.{} {unit}", tenths / 10, tenths % 10)
    } else if ms < 2 * 3_600_000 {
        let unit = if zh { "分钟" } else { "min" };
        format!("{} {unit}", ms / 60_000)
    } else {
        let unit = if zh { "小时" } else { "h" };
        format!("{} {unit}", ms / 3_600_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_sum_children_by_their_latest_receipt() {
        let children = [
            json!({"regions_expected": 4, "regions_delivered": 4, "last_receipt_at": 3_000}),
            json!({"regions_expected": 4, "regions_delivered": 2, "last_receipt_at": 2_000}),
            json!({"regions_expected": 2, "regions_delivered": 0, "last_receipt_at": null}),
        ];
        let svg = chart(Lang::En, 1_000, &children, 5_000).into_string();
        // 10 regions in all; at 1 s: 2, at 2 s: 6; the axis ends at now (4 s).
        assert!(svg.contains(">10<"), "{svg}");
        assert!(svg.contains(">4.0 s<"), "{svg}");
        let (w, h) = (WIDTH - LEFT, HEIGHT - BOTTOM);
        let expected = format!(
            "M{LEFT} {h} H{} V{} H{} V{} H{WIDTH}",
            LEFT + w / 4,
            h - 2 * h / 10,
            LEFT + w / 2,
            h - 6 * h / 10
        );
        assert!(svg.contains(&expected), "{svg}");
    }

    #[test]
    fn nothing_before_the_first_receipt() {
        let children = [json!({"regions_expected": 4, "regions_delivered": 0})];
        assert_eq!(chart(Lang::Zh, 0, &children, 10).into_string(), "");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Lang::Zh, 850), "850 ms");
        assert_eq!(duration(Lang::Zh, 1_740), "1.7 秒");
        assert_eq!(duration(Lang::En, 720_000), "12 min");
        assert_eq!(duration(Lang::Zh, 3 * 3_600_000), "3 小时");
    }
}
