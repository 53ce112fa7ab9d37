//! The node's one reading of the wall clock: the protocol takes time as an input, and this is
//! where the shell gets it.

use std::time::SystemTime;

use backflow_protocol::time::UnixMs;

pub fn now_ms() -> UnixMs {
    UnixMs(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}
