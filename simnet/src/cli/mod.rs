//! Parts of the `simnet` binary beside its command line (`main.rs`): this process's
//! resources as /proc shows them, and `simnet catalog-restore`, the restore measured in a
//! process of its own.

pub mod catalog_restore;
pub mod process;
