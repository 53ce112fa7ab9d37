//! Multi-host tests: the real `backflow` binary, one container per node on a private Docker
//! network, certificates issued down the chain (issue 6).
//!
//! The network under test mirrors five tiers: national; 浙江省; 杭州市 and 宁波市; 上城区 and
//! 拱墅区 under 杭州市; townships 清波街道 and 湖滨街道 (上城区) and 米市巷街道 (拱墅区).
//!
//! Run: `cargo test -p backflow-tests --test multihost` (after the binary is built, e.g. by
//! `cargo test --workspace`). Without Docker each test prints `SKIPPED` and returns; with
//! `CI=true` and no Docker they fail.

mod data;
mod harness;
mod scenarios;
