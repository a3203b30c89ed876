//! What the collective test modules share: communicators over an in-memory fabric with a
//! two-level cost model (sites 1.28 s apart, 0.1 ms inside one).
#![allow(clippy::unwrap_used)]

use spacefabric_node::collective::{
    CollectiveConfig, Communicator, CostModel, LinkCost, MemoryExchange, MemoryFabric,
};

/// One communicator per endpoint of `fabric`, rank r on site `sites[r]`, `lanes` lanes.
pub(crate) fn comms(
    fabric: &MemoryFabric,
    sites: &[usize],
    lanes: usize,
) -> Vec<Communicator<MemoryExchange>> {
    let nsites = sites.iter().max().map_or(1, |m| m + 1);
    let links: Vec<LinkCost> = (0..nsites * nsites)
        .map(|i| LinkCost {
            delay_s: if i % (nsites + 1) == 0 { 0.0001 } else { 1.28 },
            rate_bps: Some(1e9),
        })
        .collect();
    fabric
        .endpoints()
        .into_iter()
        .map(|ex| {
            Communicator::new(ex)
                .with_cost_model(CostModel::sites(sites.to_vec(), links.clone()))
                .unwrap()
                .with_config(CollectiveConfig { lanes })
        })
        .collect()
}
