//! The channels and threads of `sbr produce`'s reader/feeder hand-over,
//! swappable for the shuttle model checker (feature `shuttle`, for the
//! model test in `produce.rs` only; never in a program that runs).

#[cfg(not(feature = "shuttle"))]
pub(crate) use std::{sync::mpsc, thread};

#[cfg(feature = "shuttle")]
pub(crate) use shuttle::{sync::mpsc, thread};
