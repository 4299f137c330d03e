//! Snapshots uploaded over HTTPS (issue 5): the hub serves its API on `--https` with its server
//! certificate from the county CA (`sunlight-provision init` makes `hub/server.pem`), and a box
//! whose `hub.ca_file` is the county CA uploads a snapshot there, signed, and the hub serves the
//! same bytes. A hub whose certificate is not from that CA (a stranger on the county network
//! answering at the hub's address) gets nothing: the box refuses the TLS handshake, keeps the image
//! and says why in its status.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";
const DEVICE: &str = "box-01";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The county CA with the hub's server certificate for 127.0.0.1: (ca.pem, server.pem, server.key).
fn county(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("ca");
    let out = Command::new(bin("sunlight-provision"))
        .args(["init", "--dir", s(&ca), "--county", "随县", "--hub-host"])
        .arg("127.0.0.1")
        .output()
        .expect("run sunlight-provision init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        ca.join("ca.pem"),
        ca.join("hub").join("server.pem"),
        ca.join("hub").join("server.key"),
    )
}

/// Another CA, not the county's, with a server certificate for the same address.
fn stranger(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "随县 county CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = server.signed_by(&key, &issuer).expect("cert");
    let (pem, key_pem) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&pem, cert.pem()).expect("write");
    std::fs::write(&key_pem, key.serialize_pem()).expect("write");
    (pem, key_pem)
}

fn https_hub(dir: &Path, cert: &Path, key: &Path) -> (Hub, u16) {
    let mut hub = Hub::new(dir, BrokerMode::Embedded(free_port()));
    let port = free_port();
    hub.extra_args = vec![
        "--https".into(),
        format!("127.0.0.1:{port}"),
        "--tls-cert".into(),
        s(cert).into(),
        "--tls-key".into(),
        s(key).into(),
    ];
    hub.start();
    wait_for(Duration::from_secs(20), "the hub's HTTPS port", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    (hub, port)
}

/// A box syncing events to `broker_hub` and uploading images to `api` with the county CA.
fn camera_box(dir: &Path, broker_hub: &Hub, api: &str, ca: &Path) -> Agent {
    let section = format!(
        "[hub]\nbroker = \"mqtt://127.0.0.1:{}\"\napi = \"{api}\"\nca_file = \"{}\"\n[health]\ninterval_secs = 0\n[[camera]]\nid = \"w1\"\nkind = \"file\"\nwidth = 800\nheight = 600\n",
        broker_hub.mqtt_port(),
        ca.display()
    );
    Agent::new_with_hub(dir, SITE, DEVICE, &section, broker_hub)
}

fn online(agent: &Agent) {
    wait_for(Duration::from_secs(20), "the box online", || {
        agent
            .status()
            .filter(|s| s["link"]["connected"] == true)
            .map(|_| ())
    });
}

/// GET over HTTPS trusting only `ca`: (status, body).
/// GET over HTTPS trusting only `ca`, with an API token when the route needs one.
fn get_https(
    port: u16,
    path: &str,
    ca: &Path,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pem = std::fs::read(ca).expect("ca");
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("pem"))
        .build()
        .expect("client");
    rt.block_on(async {
        let mut req = client.get(format!("https://127.0.0.1:{port}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((
            status,
            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        ))
    })
}

fn blob_count(hub: &Hub) -> i64 {
    rusqlite::Connection::open_with_flags(
        hub.dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|c| c.query_row("SELECT count(*) FROM blobs", [], |r| r.get(0)))
    .expect("the hub's store")
}

#[test]
fn a_box_uploads_over_https_to_a_hub_with_the_county_certificate() {
    let dir = scratch("https-uploads");
    let (ca, cert, key) = county(&dir);
    let (mut hub, port) = https_hub(&dir.join("hub"), &cert, &key);
    let mut agent = camera_box(
        &dir.join("agent"),
        &hub,
        &format!("https://127.0.0.1:{port}"),
        &ca,
    );
    agent.start();
    online(&agent);

    let (status, answer) = hub
        .post(
            &format!("/api/v1/cameras/{SITE}/w1/snapshot?wait=30"),
            &json!({}),
        )
        .expect("POST snapshot");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["snapshot"]["image"], "uploaded", "{answer}");
    let sha256 = answer["snapshot"]["sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();

    // The same bytes over HTTPS with the county CA (and over the plain port, for a proxy).
    let (status, bytes) = get_https(
        port,
        &format!("/api/v1/blobs/{sha256}"),
        &ca,
        Some(&hub.api_token()),
    )
    .expect("HTTPS GET");
    assert_eq!(status, 200);
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256);
    assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
    let (status, _) = hub
        .get_text("/healthz")
        .expect("the plain port still answers");
    assert_eq!(status, 200);

    // The hub's own HTTPS listener tells browsers to stay on HTTPS, and its cookies are Secure.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pem = std::fs::read(&ca).expect("ca");
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("pem"))
        .build()
        .expect("client");
    let (hsts, cookie) = rt.block_on(async {
        let r = client
            .get(format!("https://127.0.0.1:{port}/login"))
            .header("x-forwarded-proto", "http")
            .send()
            .await
            .expect("HTTPS GET /login");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (h("strict-transport-security"), h("set-cookie"))
    });
    assert_eq!(hsts.as_deref(), Some("max-age=31536000"));
    assert!(
        cookie.as_deref().is_some_and(|c| c.contains("; Secure")),
        "{cookie:?}"
    );

    let spool: Value = agent.status().expect("status")["snapshots"].clone();
    assert_eq!(spool["spool"]["uploaded_total"], 1, "{spool}");
    assert_eq!(spool["spool"]["waiting"], 0, "{spool}");
}

#[test]
fn a_box_refuses_a_hub_whose_certificate_is_not_from_the_county_ca() {
    let dir = scratch("https-stranger");
    let (ca, _, _) = county(&dir);
    let (cert, key) = stranger(&dir.join("stranger-ca"));
    // The real hub (its broker carries the events and commands) and a stranger answering HTTPS
    // with a certificate of another CA, even one with the county's name. The box is registered at
    // both, so only TLS can stop the upload.
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    hub.start();
    let (stranger_hub, port) = https_hub(&dir.join("stranger"), &cert, &key);
    let mut agent = camera_box(
        &dir.join("agent"),
        &hub,
        &format!("https://127.0.0.1:{port}"),
        &ca,
    );
    stranger_hub.register(SITE, DEVICE, &agent.pubkey);
    agent.start();
    online(&agent);

    let (status, answer) = hub
        .post(
            &format!("/api/v1/cameras/{SITE}/w1/snapshot?wait=3"),
            &json!({}),
        )
        .expect("POST snapshot");
    assert_eq!(status, 202, "the image never arrives: {answer}");
    // The box took it, tried, and says the certificate is the reason; the image stays.
    let upload = wait_for(Duration::from_secs(20), "the refused handshake", || {
        let s = agent.status()?;
        let upload = s["snapshots"]["upload"].clone();
        upload["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate") || e.contains("Certificate"))
            .then_some(s["snapshots"].clone())
    });
    assert_eq!(upload["spool"]["waiting"], 1, "{upload}");
    assert_eq!(upload["spool"]["uploaded_total"], 0, "{upload}");
    assert_eq!(blob_count(&stranger_hub), 0);
    assert_eq!(blob_count(&hub), 0);
    // Nor does anything that trusts only the county CA.
    assert!(
        get_https(port, "/healthz", &ca, None).is_err(),
        "the county CA does not vouch for the stranger"
    );
}
