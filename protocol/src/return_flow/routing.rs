//! Data-plane routing: which ancestor tier serves each tier, its parser and its text form
//! (`tree`, `province-county`). A policy the return flow follows, the same on every node.

use backflow_topology::Level;

/// Data-plane routing (数据回流路由): which ancestor tier announces a dataset to — and serves
/// chunks to, and takes receipts from — each tier. The default is the strict region tree
/// (every node is served by its parent); [`DataRouting::with_direct`] adds tier-skipping links,
/// e.g. province → county, where a province announces straight to its counties and the cities
/// in between receive (and report) only their own partitions.
///
/// It must be the same on every node of a network (like the wire version): senders use it to
/// choose whom to announce to, intermediate nodes to leave alone the partitions delivered past
/// them, and receivers to choose their first source after a restart and where receipts go
/// first. Skip-level fallback is unchanged: any ancestor in the scope may still serve a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataRouting {
    /// `(upper, lower)`: nodes at tier `lower` are served by their ancestor at `upper`
    /// (skipping at least one tier). At most one entry per `lower`; sorted.
    direct: Vec<(Level, Level)>,
}

/// A routing that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("a direct link must skip at least one tier: {upper} → {lower}")]
    NotSkipping { upper: Level, lower: Level },
    #[error("tier {lower} already has a direct link from {existing}")]
    Conflict { lower: Level, existing: Level },
    #[error(
        "unknown routing {0:?}: expected `tree` or links like `province-county` (comma-separated)"
    )]
    Syntax(String),
}

impl DataRouting {
    /// The strict region tree: every node is served by its parent.
    pub fn tree() -> DataRouting {
        DataRouting::default()
    }

    /// Adds a direct link: nodes at `lower` are served by their ancestor at `upper`.
    pub fn with_direct(mut self, upper: Level, lower: Level) -> Result<DataRouting, RoutingError> {
        if upper.depth() + 1 >= lower.depth() {
            return Err(RoutingError::NotSkipping { upper, lower });
        }
        if let Some(&(existing, _)) = self.direct.iter().find(|(_, l)| *l == lower) {
            if existing != upper {
                return Err(RoutingError::Conflict { lower, existing });
            }
            return Ok(self);
        }
        self.direct.push((upper, lower));
        self.direct.sort_unstable_by_key(|(_, l)| *l);
        Ok(self)
    }

    /// Whether this is the strict region tree.
    pub fn is_tree(&self) -> bool {
        self.direct.is_empty()
    }

    /// The direct links, `(upper, lower)`, by lower tier.
    pub fn direct_links(&self) -> &[(Level, Level)] {
        &self.direct
    }

    /// The tier that serves nodes at `lower` (`None` at national).
    pub fn upstream_level(&self, lower: Level) -> Option<Level> {
        self.direct
            .iter()
            .find(|(_, l)| *l == lower)
            .map(|(u, _)| *u)
            .or_else(|| lower.parent())
    }

    /// The deepest tier a node at `upper` serves (its children's, or a direct link's).
    pub(super) fn reach(&self, upper: Level) -> Level {
        self.direct
            .iter()
            .filter(|(u, _)| *u == upper)
            .map(|(_, l)| *l)
            .chain(upper.child())
            .max()
            .unwrap_or(upper)
    }
}

impl std::str::FromStr for DataRouting {
    type Err = RoutingError;

    /// `tree`, or comma-separated `upper-lower` tier pairs such as `province-county`.
    fn from_str(text: &str) -> Result<DataRouting, RoutingError> {
        let text = text.trim();
        let mut routing = DataRouting::tree();
        if text == "tree" {
            return Ok(routing);
        }
        let level = |name: &str| {
            Level::ALL
                .into_iter()
                .find(|l| l.name() == name.trim())
                .ok_or_else(|| RoutingError::Syntax(text.to_string()))
        };
        for link in text.split(',') {
            let (upper, lower) = link
                .split_once('-')
                .ok_or_else(|| RoutingError::Syntax(text.to_string()))?;
            routing = routing.with_direct(level(upper)?, level(lower)?)?;
        }
        Ok(routing)
    }
}

impl std::fmt::Display for DataRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.direct.is_empty() {
            return f.write_str("tree");
        }
        for (i, (u, l)) in self.direct.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}", u.name(), l.name())?;
        }
        Ok(())
    }
}
