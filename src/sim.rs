//! The simulators (crate `attendsync-sim`) under `crate::sim`, for the unit
//! tests that drive them from inside the library (e.g. `source::dingtalk`).

pub use attendsync_sim::*;

pub mod test_util {
    /// A reqwest client for talking to the simulators (plain HTTP on loopback).
    pub fn client() -> reqwest::Client {
        // reqwest is built with `rustls-no-provider`: a provider must be installed
        // before a client is built, even though the simulators speak plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap()
    }
}
