//! The console's pages, one file each.

pub mod catalog;
pub mod ledger;
pub mod login;
pub mod overview;
pub mod publish;
pub mod return_flow;
pub mod reviews;
pub mod sharing;
