//! Multi-host tests: the real `backflow` binary, one container per node on a private Docker
//! network, certificates issued down the chain (issue 6).
//!
//! The network under test mirrors five tiers: national; 浙江省; 杭州市 and 宁波市; 上城区 and
//! 拱墅区 under 杭州市; townships 清波街道 and 湖滨街道 (上城区) and 米市巷街道 (拱墅区).
//!
//! Run: `cargo test -p backflow-tests --test multihost` (after the binary is built, e.g. by
//! `cargo test --workspace`). Without Docker each test prints `SKIPPED` and returns; with
//! `CI=true` and no Docker they fail.

// The harness, one job per file; `->` names the harness files each one imports. The arrows
// run one way: only the tests (data, scenarios) import pki, faults and client.
//   suite                  the binary, its image, the serial lock
//   poll                   HTTP client for the nodes' APIs, bounded waits
//   net     -> suite, poll Net and Node: the per-test Docker network and containers
//   pki     -> suite, net  init, certificates down the chain, bring_up
//   faults  -> net, poll   partitions, kill/restart, tc link shaping
//   client  -> net, poll   `backflow` commands in containers, API calls, logs
mod client;
mod faults;
mod net;
mod pki;
mod poll;
mod suite;

mod data;
mod relayed;
mod scenarios;
mod sharing;
