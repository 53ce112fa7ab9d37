//! Adapter: drives `backflow_protocol`'s state machines inside the engine.

use backflow_topology::{RegionCode, Topology};

use crate::dataset::Layout;
use crate::engine::Micros;
use crate::refmodel::ModelNode;
use crate::scenario::RunConfig;

pub fn build_nodes(
    _topo: &Topology,
    _layout: &Layout,
    _config: &RunConfig,
    _churn: &[(RegionCode, Micros)],
) -> Result<Vec<ModelNode>, String> {
    Err("the protocol adapter is not built yet; use --node model".to_string())
}
