//! TLS against a real Mosquitto TLS listener with client certificates (mTLS): the hub and a box
//! each present a certificate of the county CA and events flow; a box without one is refused by the
//! broker while its events wait safely in its outbox.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use std::path::Path;
use std::time::Duration;
use sunlight_tests::*;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    hub: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Suixian county CA (test)");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    server_params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params
        .distinguished_name
        .push(DnType::CommonName, "box-01");
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .expect("client cert");

    let hub_key = KeyPair::generate().expect("hub key");
    let mut hub_params = CertificateParams::new(Vec::<String>::new()).expect("hub params");
    hub_params
        .distinguished_name
        .push(DnType::CommonName, "hub");
    let hub_cert = hub_params.signed_by(&hub_key, &issuer).expect("hub cert");

    Pki {
        hub: (hub_cert.pem(), hub_key.serialize_pem()),
        ca: ca_cert.pem(),
        server: (server_cert.pem(), server_key.serialize_pem()),
        client: (client_cert.pem(), client_key.serialize_pem()),
    }
}

/// Mosquitto with a plain listener for the hub (same host) and an mTLS listener for boxes.
fn mosquitto_tls(dir: &Path, pki: &Pki) -> (Proc, u16, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    for (name, text) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server.0),
        ("server.key", &pki.server.1),
    ] {
        std::fs::write(dir.join(name), text).expect("write pem");
    }
    let (plain, tls) = (free_port(), free_port());
    let conf = format!(
        "per_listener_settings true\nlistener {plain} 127.0.0.1\nallow_anonymous true\n\
         listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
         require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
        d = dir.display()
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
    let exe = mosquitto_exe();
    let proc = Proc::spawn(
        std::process::Command::new(exe)
            .arg("-c")
            .arg(dir.join("mosquitto.conf")),
        dir.join("mosquitto.log"),
    );
    wait_for(Duration::from_secs(10), "mosquitto's TLS listener", || {
        std::net::TcpStream::connect(("127.0.0.1", tls)).ok()
    });
    (proc, plain, tls)
}

#[test]
fn a_box_with_a_county_certificate_syncs_over_mtls_and_one_without_is_refused() {
    let dir = scratch("tls");
    let pki = pki();
    let (_mosquitto, _plain, tls) = mosquitto_tls(&dir.join("mosquitto"), &pki);
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::write(certs.join("ca.pem"), &pki.ca).expect("ca");
    std::fs::write(certs.join("box.pem"), &pki.client.0).expect("cert");
    std::fs::write(certs.join("box.key"), &pki.client.1).expect("key");
    std::fs::write(certs.join("hub.pem"), &pki.hub.0).expect("hub cert");
    std::fs::write(certs.join("hub.key"), &pki.hub.1).expect("hub key");
    // The hub too connects over mTLS, with its own certificate of the county CA.
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::ExternalTls(tls));
    hub.extra_args = [
        "--broker-ca",
        "ca.pem",
        "--broker-cert",
        "hub.pem",
        "--broker-key",
        "hub.key",
    ]
    .iter()
    .map(|a| {
        if a.starts_with("--") {
            a.to_string()
        } else {
            certs.join(a).display().to_string()
        }
    })
    .collect();
    hub.start();

    let tls_hub = format!(
        "[hub]\nbroker = \"mqtts://127.0.0.1:{tls}\"\nca_file = \"{c}/ca.pem\"\ncert_file = \"{c}/box.pem\"\nkey_file = \"{c}/box.key\"\n",
        c = certs.display()
    );
    let mut good = Agent::new_with_hub(
        &dir.join("box-01"),
        "suixian-shangshi",
        "box-01",
        &tls_hub,
        &hub,
    );
    good.start();
    let accepted: Vec<u64> = (0..50).filter(|n| good.punch(*n)).collect();
    assert_eq!(accepted.len(), 50);
    wait_for(
        Duration::from_secs(30),
        "punches over mTLS at the hub",
        || (hub.events("suixian-shangshi", "box-01", "punch").len() == 50).then_some(()),
    );
    assert_exactly_once(
        &hub.events("suixian-shangshi", "box-01", "punch"),
        &accepted,
    );

    // Same CA, no client certificate: the broker refuses the box; its punches stay in its outbox.
    let no_cert = format!(
        "[hub]\nbroker = \"mqtts://127.0.0.1:{tls}\"\nca_file = \"{}/ca.pem\"\n",
        certs.display()
    );
    let mut bare = Agent::new_with_hub(
        &dir.join("box-02"),
        "suixian-shangshi",
        "box-02",
        &no_cert,
        &hub,
    );
    bare.start();
    assert!(
        bare.punch(1) && bare.punch(2),
        "the box still records while it cannot sync"
    );
    std::thread::sleep(Duration::from_secs(3));
    let status = bare.status().expect("status");
    assert_eq!(status["link"]["connected"], false, "{status}");
    // The two punches (and the box's own health event) wait in the outbox.
    assert!(status["backlog"]["events"].as_u64() >= Some(2), "{status}");
    assert!(hub.events("suixian-shangshi", "box-02", "punch").is_empty());
}
