//! A `perform` that records what it is given, and reading back what it
//! recorded.

use std::sync::{Arc, Mutex};

/// A `perform` that records every operation it is given, and the list.
#[allow(clippy::type_complexity)]
pub(crate) fn recorder<T: Clone + Send + 'static>() -> (
    Arc<Mutex<Vec<T>>>,
    impl FnMut(&[T]) -> Result<(), String> + Send + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |ops: &[T]| {
        sink.lock().unwrap().extend_from_slice(ops);
        Ok(())
    })
}

pub(crate) fn le_u32(op: &[u8]) -> u32 {
    u32::from_le_bytes(op.try_into().expect("4-byte operation"))
}
