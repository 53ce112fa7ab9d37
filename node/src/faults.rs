//! Test-only switches, compiled in only with the `fault-injection` cargo feature. The
//! container tests' image is built from the workspace's test build, where the `backflow-tests`
//! crate turns the feature on; a node built for use (`cargo build --release --bin backflow`,
//! `cargo install --path node`) has neither switch:
//! - `BACKFLOW_FAULT_TAMPER_SERVE=1` serves chunk frames with a flipped byte;
//! - `SSLKEYLOGFILE` makes rustls (inside libp2p-tls and libp2p-quic) write TLS session keys
//!   to a file. Without the feature the variable is removed from the environment at start,
//!   before any TLS configuration exists, so no session key is ever written.

/// Whether this build carries the fault switches.
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

const TAMPER_SERVE_VAR: &str = "BACKFLOW_FAULT_TAMPER_SERVE";
const KEY_LOG_VAR: &str = "SSLKEYLOGFILE";

/// `BACKFLOW_FAULT_TAMPER_SERVE=1`, honoured only with the feature. `var` reads the
/// environment (a parameter so tests need not touch the process's).
pub fn tamper_serve(var: impl Fn(&str) -> Option<String>) -> bool {
    let asked = var(TAMPER_SERVE_VAR).is_some_and(|v| v == "1");
    if asked && !FAULT_INJECTION {
        tracing::warn!("{TAMPER_SERVE_VAR} is ignored: this build has no fault-injection feature");
    }
    asked && FAULT_INJECTION
}

/// Whether `SSLKEYLOGFILE` may stay in the environment.
pub fn key_log_allowed() -> bool {
    FAULT_INJECTION
}

/// Called first thing in `main`, while the process has one thread: without the feature,
/// removes `SSLKEYLOGFILE` so no TLS library can log session keys. Returns whether it did.
pub fn scrub_environment() -> bool {
    if key_log_allowed() || std::env::var_os(KEY_LOG_VAR).is_none() {
        return false;
    }
    // Safe here: single-threaded (see the doc); edition 2021 keeps remove_var safe to call.
    std::env::remove_var(KEY_LOG_VAR);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_switches_follow_the_build() {
        let on = |name: &str| (name == TAMPER_SERVE_VAR).then(|| "1".to_string());
        assert_eq!(tamper_serve(on), cfg!(feature = "fault-injection"));
        assert!(!tamper_serve(|_| None));
        assert!(!tamper_serve(|_| Some("yes".into())));
        assert_eq!(key_log_allowed(), cfg!(feature = "fault-injection"));
    }
}
