//! An in-process controller on a one-site lan topology, as the control-plane tests (round
//! trips, watch and status bounds, time dilation) start it: no state dir, no TLS, no light
//! delay. Tests change the returned [`ServerConfig`] before [`serve`].

use std::time::Duration;

use spacefabric_controller::core::CoreConfig;
use spacefabric_controller::server::{
    DEFAULT_MAX_MESSAGE_BYTES, ServerConfig, ServerHandle, spawn_server,
};
use spacefabric_controller::topology::Topology;

/// A lan controller's configuration admitting `token`.
pub fn lan_config(token: &str) -> ServerConfig {
    ServerConfig {
        topology: Topology::new("lan", "name = \"lan\"\n", 1, vec!["lan".into()], |_, _| {
            Duration::ZERO
        }),
        core: CoreConfig {
            controller_site: "lan".into(),
            ..CoreConfig::default()
        },
        join_token: token.into(),
        state_dir: None,
        light_delay: false,
        tls_names: None,
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
    }
}

/// Serves `config` on 127.0.0.1 port 0 (the listener is bound here and handed over: no port
/// race); the handle names the address.
pub async fn serve(config: ServerConfig) -> ServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0 for the controller: {e}"));
    spawn_server(config, listener)
        .await
        .unwrap_or_else(|e| panic!("starting the controller: {e}"))
}
