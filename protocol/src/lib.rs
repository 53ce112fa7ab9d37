//! Backflow protocol core.
