//! What the server's integration tests share: the test server and client
//! from `tsockm-testkit`, and the settings they start with.
#![allow(dead_code, unused_imports)]

use tsockm_server::Config;
pub use tsockm_testkit::{TestClient, TestServer, test_config as config};

/// Starts a server with the test settings.
pub async fn start() -> TestServer {
    TestServer::start().await
}

/// Starts a server with `config`.
pub async fn start_with(config: Config) -> TestServer {
    TestServer::start_with(config).await
}
