//! Snapshot images at the hub over real HTTP: a `snapshot` event arrives through a box and shows as
//! "uploading"; the signed upload stores the image once (idempotent), refusing unsigned, forged,
//! damaged, oversized and non-JPEG uploads; the camera list and history then show it "uploaded";
//! "snapshot now" records a command for the box and answers 202 while it has not answered.
//! Thumbnails for the wall (`?thumb=1`): 320 px wide, made once and kept, refused for bad images.
//! Each test runs twice: with the hub's images in its data directory (`store = "local"`) and in a
//! bucket of an S3-compatible server (`store = "s3"`: moto's server, started on a free port).

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use sunlight_protocol::{DeviceKey, blob};
use sunlight_tests::*;

const SITE: &str = "suixian-shangshi";

struct Put {
    status: u16,
    body: String,
}

fn put(hub: &Hub, sha: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Put {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body_len = body.len();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/api/v1/blobs/{sha}", hub.http))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("put of {} bytes: {e:?}", body_len));
        Put {
            status: r.status().as_u16(),
            body: r.text().await.unwrap_or_default(),
        }
    })
}

fn signed(key: &DeviceKey, sha: &str, device: &str) -> Vec<(&'static str, String)> {
    let time = chrono::Utc::now().to_rfc3339();
    let sig = key.sign(&blob::put_message(sha, SITE, device, &time));
    vec![
        (blob::SITE_HEADER, SITE.to_owned()),
        (blob::DEVICE_HEADER, device.to_owned()),
        (blob::TIME_HEADER, time),
        (
            blob::SIGNATURE_HEADER,
            base64::engine::general_purpose::STANDARD.encode(sig),
        ),
    ]
}

/// `body` uploaded under its own digest, signed by box-01 with `key`.
fn upload(hub: &Hub, key: &DeviceKey, body: &[u8]) -> Put {
    let digest = sha(body);
    put(hub, &digest, body.to_vec(), &signed(key, &digest, "box-01"))
}

fn jpeg(seed: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    b.extend(std::iter::repeat_n(seed, 2000));
    b.extend([0xFF, 0xD9]);
    b
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where the hub under test keeps its images.
enum Store {
    Local,
    /// moto's S3 server (killed when dropped) and its port.
    S3 {
        _moto: Proc,
        port: u16,
    },
}

const BUCKET: &str = "county-snapshots";
const PREFIX: &str = "sunlight/";

impl Store {
    /// A hub (not started) with its images in `kind`'s store.
    fn hub(dir: &std::path::Path, kind: &str) -> (Hub, Store) {
        let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
        if kind == "local" {
            return (hub, Store::Local);
        }
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "moto_server is missing: pip install 'moto[server]' (scripts/test installs it)"
        );
        let port = free_port();
        let moto = Proc::spawn(
            std::process::Command::new("moto_server").args([
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]),
            dir.join("moto.log"),
        );
        wait_for(Duration::from_secs(30), "moto's S3 server", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        // The county makes the bucket with its own tools; moto takes an unsigned request.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let made = rt.block_on(async {
            ::reqwest::Client::new()
                .put(format!("http://127.0.0.1:{port}/{BUCKET}"))
                .header("content-length", "0")
                .body(Vec::new())
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert_eq!(made.ok(), Some(200), "creating the bucket");
        let config = hub.dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "[blobs]\nstore = \"s3\"\n[blobs.s3]\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\naccess_key = \"sunlight-hub\"\nsecret_key = \"test-secret\"\n"
            ),
        )
        .expect("hub.toml");
        hub.extra_args = vec!["--config".into(), config.display().to_string()];
        (hub, Store::S3 { _moto: moto, port })
    }

    /// The bytes the store holds under `key`, read behind the hub's back.
    fn stored(&self, hub: &Hub, key: &str) -> Option<Vec<u8>> {
        match self {
            Store::Local => std::fs::read(
                hub.dir
                    .join("blobs")
                    .join(&key[..2])
                    .join(format!("{key}.jpg")),
            )
            .ok(),
            // moto refuses unsigned reads of objects: read with a signed GET of our own.
            Store::S3 { port, .. } => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let config = sunlight_hub::config::S3Config {
                    endpoint: format!("http://127.0.0.1:{port}"),
                    bucket: BUCKET.into(),
                    region: "us-east-1".into(),
                    prefix: PREFIX.into(),
                    access_key: "sunlight-hub".into(),
                    secret_key_file: None,
                    secret_key: Some("test-secret".into()),
                    path_style: true,
                    ca_file: None,
                    timeout_secs: 10,
                };
                let store =
                    sunlight_hub::s3::S3Store::new(&config, rt.handle().clone()).expect("store");
                sunlight_hub::blobs::BlobStore::get(&store, key).expect("GET from the bucket")
            }
        }
    }
}

#[test]
fn images_upload_signed_once_and_show_per_camera() {
    images_upload_signed_once("local");
}

#[test]
fn images_upload_signed_once_into_an_s3_bucket() {
    images_upload_signed_once("s3");
}

fn images_upload_signed_once(kind: &str) {
    let dir = scratch(&format!("blobs-{kind}"));
    let (mut hub, store) = Store::hub(&dir, kind);
    let mut agent = Agent::new(
        &dir.join("agent"),
        SITE,
        "box-01",
        hub.mqtt_port(),
        &hub,
        "",
    );
    agent.start();
    hub.start();
    let key_hex = std::fs::read_to_string(dir.join("agent").join("data").join("device.key"))
        .expect("device key");
    let key = DeviceKey::from_hex(key_hex.trim()).expect("key");
    let image = jpeg(7);
    let digest = sha(&image);
    let event = json!({"kind": "snapshot", "body": {"camera_id": "cam-w1", "sha256": digest, "bytes": image.len(),
        "width": 640, "height": 480, "taken_at": chrono::Utc::now().to_rfc3339(), "trigger": "schedule"}});
    assert_eq!(agent.post(&event).expect("post").0, 201);
    let cam = wait_for(Duration::from_secs(30), "the snapshot event", || {
        hub.get(&format!("/api/v1/cameras?site={SITE}"))?["cameras"]
            .as_array()?
            .first()
            .cloned()
    });
    assert_eq!(
        (cam["camera_id"].as_str(), cam["image"].as_str()),
        (Some("cam-w1"), Some("uploading"))
    );

    // Refusals, each with a reason, none storing anything.
    let p = put(&hub, &digest, image.clone(), &[]);
    assert_eq!(p.status, 401, "{}", p.body);
    let other = DeviceKey::generate().expect("key");
    let p = put(
        &hub,
        &digest,
        image.clone(),
        &signed(&other, &digest, "box-01"),
    );
    assert_eq!(p.status, 401, "forged: {}", p.body);
    let p = put(
        &hub,
        &digest,
        image.clone(),
        &signed(&key, &digest, "box-99"),
    );
    assert_eq!(p.status, 401, "unknown box: {}", p.body);
    let mut damaged = image.clone();
    damaged[100] ^= 1;
    let p = put(&hub, &digest, damaged, &signed(&key, &digest, "box-01"));
    assert_eq!(p.status, 400, "{}", p.body);
    let p = upload(&hub, &key, b"<html>login</html>");
    assert_eq!(p.status, 415, "{}", p.body);
    // Over the size bound: 413 on the declared length, before the body is read (a client that
    // went on writing the whole body might see the connection closed first).
    let oversized = sha(&vec![0xFF; blob::MAX_BLOB_BYTES + 1]);
    let head = raw_put_head(
        &hub,
        &oversized,
        blob::MAX_BLOB_BYTES + 1,
        &signed(&key, &oversized, "box-01"),
    );
    let line = answer_line(&mut start_put(&hub, &head, 64 * 1024));
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");
    let p = put(
        &hub,
        "../../etc/passwd",
        image.clone(),
        &signed(&key, &digest, "box-01"),
    );
    assert!(
        p.status == 400 || p.status == 404,
        "{} {}",
        p.status,
        p.body
    );

    assert_eq!(
        store.stored(&hub, &digest),
        None,
        "nothing stored by refusals"
    );

    // The real upload, then a repeat (a box resuming after a restart).
    let p = upload(&hub, &key, &image);
    assert_eq!(p.status, 201, "{}", p.body);
    let p = upload(&hub, &key, &image);
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(store.stored(&hub, &digest), Some(image.clone()));
    if let Store::S3 { .. } = store {
        assert!(
            !hub.dir.join("blobs").join(&digest[..2]).exists(),
            "nothing in the data directory"
        );
    }
    let cams = hub
        .get(&format!("/api/v1/cameras?site={SITE}"))
        .expect("cameras");
    assert_eq!(cams["cameras"][0]["image"], "uploaded");
    let (status, _, got) = fetch(&hub, &format!("/api/v1/blobs/{digest}"));
    assert_eq!((status, got), (200, image.clone()));
    let history = hub
        .get(&format!("/api/v1/cameras/{SITE}/cam-w1/snapshots"))
        .expect("history");
    assert_eq!(history["snapshots"].as_array().map(Vec::len), Some(1));

    // "Snapshot now": a command for the box that has this camera; without an answer in time, 202.
    let (status, body) = hub
        .post(
            &format!("/api/v1/cameras/{SITE}/cam-w1/snapshot?wait=1"),
            &json!({}),
        )
        .expect("snapshot now");
    assert_eq!(status, 202, "{body}");
    let cmds = hub
        .get(&format!("/api/v1/commands?site={SITE}"))
        .expect("commands");
    assert!(
        cmds["commands"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["kind"] == "snapshot" && c["device"] == "box-01")),
        "{cmds}"
    );
    assert_eq!(hub.integrity(), "ok");
}

/// GET a hub path with the harness's credentials: (status, content type, body).
fn fetch(hub: &Hub, path: &str) -> (u16, String, Vec<u8>) {
    hub.get_full(path).expect("GET")
}

#[test]
fn thumbnails_for_the_wall_are_made_once_kept_and_refused_for_bad_images() {
    thumbnails_made_once_kept_and_refused("local");
}

#[test]
fn thumbnails_are_kept_in_an_s3_bucket() {
    thumbnails_made_once_kept_and_refused("s3");
}

fn thumbnails_made_once_kept_and_refused(kind: &str) {
    use sunlight_agent::capture::camera::jpeg as camera_jpeg;
    let dir = scratch(&format!("blobs-thumbs-{kind}"));
    let (mut hub, store) = Store::hub(&dir, kind);
    hub.start();
    let key = DeviceKey::generate().expect("key");
    hub.register(SITE, "box-01", &key.public().to_base64());
    let base = "/api/v1/blobs";

    // A 1280×720 snapshot, as the box's fake camera makes them.
    let image = camera_jpeg::generate(1280, 720, 42, "window 1");
    let digest = sha(&image);
    let p = upload(&hub, &key, &image);
    assert_eq!(p.status, 201, "{}", p.body);
    let (status, ctype, thumb) = fetch(&hub, &format!("{base}/{digest}?thumb=1"));
    assert_eq!((status, ctype.as_str()), (200, "image/jpeg"));
    assert_eq!(
        camera_jpeg::dimensions(&thumb),
        Ok(camera_jpeg::Dimensions {
            width: 320,
            height: 180
        })
    );
    // Kept in the blob store under its own key; the next request gets the same bytes, the image
    // itself is unchanged.
    let key_of_thumb = sunlight_hub::blobs::thumb_key(&digest);
    assert_eq!(store.stored(&hub, &key_of_thumb), Some(thumb.clone()));
    assert_eq!(store.stored(&hub, &digest), Some(image.clone()));
    assert_eq!(fetch(&hub, &format!("{base}/{digest}?thumb=1")).2, thumb);
    assert_eq!(fetch(&hub, &format!("{base}/{digest}")).2, image);

    // An image the hub cannot decode: a clear refusal, nothing stored.
    let junk = jpeg(9);
    let junk_sha = sha(&junk);
    let p = upload(&hub, &key, &junk);
    assert_eq!(p.status, 201, "{}", p.body);
    let (status, _, body) = fetch(&hub, &format!("{base}/{junk_sha}?thumb=1"));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("the image cannot be made into a thumbnail"),
        "{body}"
    );
    assert_eq!(
        store.stored(&hub, &sunlight_hub::blobs::thumb_key(&junk_sha)),
        None
    );
    assert_eq!(store.stored(&hub, &junk_sha), Some(junk.clone()));
    // No such image, and a bad query.
    let (status, _, _) = fetch(&hub, &format!("{base}/{}?thumb=1", sha(b"never")));
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&hub, &format!("{base}/{digest}?thumb=big"));
    assert_eq!(status, 400);
    assert_eq!(hub.integrity(), "ok");
}

/// A PUT's request line and headers, by hand: a client that sends `content_length` bytes of body
/// only as the test writes them.
fn raw_put_head(hub: &Hub, sha: &str, content_length: usize, headers: &[(&str, String)]) -> String {
    let mut head = format!(
        "PUT /api/v1/blobs/{sha} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: image/jpeg\r\nContent-Length: {content_length}\r\n",
        hub.http
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Opens a connection and sends `head` and the first `sent` bytes of a body.
fn start_put(hub: &Hub, head: &str, sent: usize) -> std::net::TcpStream {
    use std::io::Write;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", hub.http)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(head.as_bytes()).expect("head");
    conn.write_all(&vec![0xFFu8; sent])
        .expect("some of the body");
    conn
}

/// The status line of what `conn` is answered, read within its timeout.
fn answer_line(conn: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A PUT through reqwest: (status, Retry-After).
fn put_with_retry_after(
    hub: &Hub,
    sha: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/api/v1/blobs/{sha}", hub.http))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.expect("put");
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (r.status().as_u16(), retry)
    })
}

/// Issue 14, item 8: a stranger's upload is refused before its body is read, and only
/// `[blobs] max_concurrent_puts` uploads are read at once (503 with Retry-After over it).
#[test]
fn uploads_are_authenticated_before_their_body_is_read_and_capped() {
    let dir = scratch("blobs-guard");
    let mut hub = Hub::new(&dir.join("hub"), BrokerMode::Embedded(free_port()));
    let config = hub.dir.join("hub.toml");
    std::fs::create_dir_all(&hub.dir).expect("hub dir");
    std::fs::write(&config, "[blobs]\nmax_concurrent_puts = 2\n").expect("hub.toml");
    hub.extra_args = vec!["--config".into(), config.display().to_string()];
    let key = DeviceKey::generate().expect("key");
    hub.register(SITE, "box-01", &key.public().to_base64());
    hub.start();

    // A stranger announces 100 MiB and has sent 64 KiB: the 401 comes at once, the rest unread.
    let image = jpeg(1);
    let digest = sha(&image);
    let head = raw_put_head(&hub, &digest, 100 * 1024 * 1024, &[]);
    let started = std::time::Instant::now();
    let mut stranger = start_put(&hub, &head, 64 * 1024);
    let line = answer_line(&mut stranger);
    assert!(line.starts_with("HTTP/1.1 401"), "{line:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered while the client was still sending: {:?}",
        started.elapsed()
    );
    // Forged by another key: the same.
    let other = DeviceKey::generate().expect("key");
    let head = raw_put_head(
        &hub,
        &digest,
        100 * 1024 * 1024,
        &signed(&other, &digest, "box-01"),
    );
    let mut forger = start_put(&hub, &head, 64 * 1024);
    let line = answer_line(&mut forger);
    assert!(line.starts_with("HTTP/1.1 401"), "{line:?}");
    // The box's own upload announcing more than an image may be: 413 before the body.
    let head = raw_put_head(
        &hub,
        &digest,
        100 * 1024 * 1024,
        &signed(&key, &digest, "box-01"),
    );
    let mut huge = start_put(&hub, &head, 64 * 1024);
    let line = answer_line(&mut huge);
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");

    // Two slow uploads of the box hold both permits...
    let slow: Vec<std::net::TcpStream> = (0..2u8)
        .map(|i| {
            let body = jpeg(10 + i);
            let d = sha(&body);
            let head = raw_put_head(&hub, &d, body.len(), &signed(&key, &d, "box-01"));
            start_put(&hub, &head, 100)
        })
        .collect();
    // ... so a third is told to come back later.
    let third = jpeg(20);
    let third_sha = sha(&third);
    let retry = wait_for(Duration::from_secs(20), "a 503 over the cap", || {
        let (status, retry) = put_with_retry_after(
            &hub,
            &third_sha,
            third.clone(),
            &signed(&key, &third_sha, "box-01"),
        );
        (status == 503).then_some(retry)
    });
    assert_eq!(retry.as_deref(), Some("10"), "Retry-After says when");
    // A stranger is still refused at once, not queued.
    let (status, _) = put_with_retry_after(&hub, &third_sha, third.clone(), &[]);
    assert_eq!(status, 401);
    // The slow ones go away: the permits come back and the next upload is stored.
    drop(slow);
    let next = jpeg(21);
    let next_sha = sha(&next);
    wait_for(Duration::from_secs(20), "the next upload stored", || {
        let (status, _) = put_with_retry_after(
            &hub,
            &next_sha,
            next.clone(),
            &signed(&key, &next_sha, "box-01"),
        );
        (status == 201).then_some(())
    });
}
