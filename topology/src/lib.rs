//! China's administrative division tree as pure data.
//!
//! - [`RegionCode`] and [`Level`]: syntax and arithmetic of the NBS 2023 codes (统计用区划代码).
//! - [`is_known_village`]: the NBS 2023 village list (620,573 villages), for checking records'
//!   12-digit village codes; villages are locations in a township, not nodes of the tree.
//! - [`Topology`]: a loaded tree — the embedded national table ([`Topology::china`]) or a
//!   synthetic one for what-if planning ([`Topology::synthetic`]) — with names and children.
//!
//! # Irregular places, and how a missing tier is represented
//! Every township has a full node path national → province → city → county → township. Where
//! the real administration skips a tier, the NBS table already carries a *placeholder* entry
//! for it, and we keep that placeholder as an ordinary node, tagged with a [`RegionKind`]:
//! - municipalities (北京 11, 天津 12, 上海 31, 重庆 50) have city entries 市辖区 (1101, 1201,
//!   3101, 5001) and 县 (5002): [`RegionKind::MunicipalDistricts`];
//! - counties governed directly by a province (省直辖县级行政区划 4190, 4290, 4690, 6590) hang
//!   under a placeholder city: [`RegionKind::DirectlyAdministered`];
//! - cities with no county tier (东莞 441900, 中山 442000, 儋州 460400, 嘉峪关 620201) have a
//!   county entry standing for the city itself: [`RegionKind::CityAsCounty`];
//! - 金门县 has a single placeholder township 350527000: [`RegionKind::TownshipPlaceholder`].
//!
//! A placeholder node is run by the jurisdiction it stands for (e.g. 东莞's data authority
//! runs both 4419 and 441900), so the protocol never has to special-case a short path.

mod code;
mod table;
mod villages;

pub use code::{CodeError, Level, RegionCode, VILLAGE_DIGITS};
pub use table::{Fanout, Region, RegionKind, Topology, TopologyError};
pub use villages::{is_known_village, villages_of, VILLAGES_TOTAL};
