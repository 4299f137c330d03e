//! The embedded MQTT broker (rumqttd), for the default tier: a hub that needs no separate broker.
//! Production counties point the hub at Mosquitto or EMQX instead (`--broker mqtt://host:port`).
//! Why rumqttd: docs/decisions/0001-embedded-broker.md.

use crate::error::Error;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Largest MQTT packet the embedded broker accepts (a 256 KiB batch fits with room to spare).
pub const MAX_PACKET: usize = 1024 * 1024 + 16 * 1024;

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let v4 = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("v4".to_string(), v4)])),
        ..Default::default()
    }
}

/// Starts the broker on its own threads and waits until it accepts connections.
pub fn start_embedded(listen: SocketAddr) -> Result<(), Error> {
    // Fail early and clearly when the port is taken (rumqttd would only log it).
    drop(std::net::TcpListener::bind(listen).map_err(|e| {
        Error::io(format!("the embedded broker cannot listen on {listen} (is another broker running? pick another with --embedded-broker)"), e)
    })?);
    let mut broker = Broker::new(config(listen));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(|e| Error::io("starting the embedded broker thread", e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            tracing::info!(%listen, "embedded MQTT broker ready");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Error::Broker(format!(
        "the embedded broker did not start listening on {listen} within 10 s"
    )))
}
