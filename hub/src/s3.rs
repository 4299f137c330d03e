//! The S3-compatible blob store (MinIO, Ceph RGW, ...; `[blobs] store = "s3"`, decision 0010):
//! images are objects `<prefix>ab/<sha256>.jpg` in one bucket, like the files of
//! [`crate::blobs::LocalDir`]. Requests are signed with AWS Signature V4 by rusty-s3 (presigned
//! URLs, good for a minute) and sent with the hub's reqwest client.
//!
//! [`BlobStore`] is a blocking interface (the hub calls it from blocking tasks and the retention
//! thread), so each call runs its request on the hub's runtime through a [`Handle`]: call it from
//! a blocking context, never from async code.

use crate::blobs::BlobStore;
use crate::config::S3Config;
use reqwest::StatusCode;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::io;
use std::time::Duration;
use tokio::runtime::Handle;

/// How long a signed URL is good for (each is used at once).
const SIGNED_FOR: Duration = Duration::from_secs(60);

pub struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    client: reqwest::Client,
    runtime: Handle,
    /// For messages: `endpoint/bucket`.
    name: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({})", self.name)
    }
}

fn other(what: String) -> io::Error {
    io::Error::other(what)
}

/// The error and its sources (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

impl S3Store {
    /// [`S3Store::new`], then checks that the bucket answers. Every error says what to fix.
    pub async fn open(config: &S3Config, runtime: Handle) -> Result<S3Store, String> {
        let store = S3Store::new(config, runtime)?;
        store.check(config).await?;
        Ok(store)
    }

    /// Reads the secret and makes the client, without asking the store anything.
    pub fn new(config: &S3Config, runtime: Handle) -> Result<S3Store, String> {
        let secret = match (&config.secret_key, &config.secret_key_file) {
            (Some(s), _) => s.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| format!("blobs.s3.secret_key_file {}: {e}", file.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned(),
            (None, None) => return Err("blobs.s3 has no secret key".into()),
        };
        if secret.is_empty() {
            return Err("blobs.s3: the secret key is empty".into());
        }
        let endpoint: url::Url = config
            .endpoint
            .parse()
            .map_err(|e| format!("blobs.s3.endpoint {:?}: {e}", config.endpoint))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| {
            format!(
                "blobs.s3: endpoint {:?}, bucket {:?}: {e}",
                config.endpoint, config.bucket
            )
        })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(config.timeout_secs));
        if let Some(ca) = &config.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("blobs.s3.ca_file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("blobs.s3.ca_file {}: {e}", ca.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| format!("blobs.s3: the HTTP client: {}", chain(&e)))?;
        let store = S3Store {
            name: format!(
                "{}/{}",
                config.endpoint.trim_end_matches('/'),
                config.bucket
            ),
            bucket,
            credentials: Credentials::new(config.access_key.clone(), secret),
            prefix: config.prefix.clone(),
            client,
            runtime,
        };
        Ok(store)
    }

    async fn check(&self, config: &S3Config) -> Result<(), String> {
        let store = self;
        let url = store
            .bucket
            .head_bucket(Some(&store.credentials))
            .sign(SIGNED_FOR);
        let answer = store.client.head(url).send().await.map_err(|e| {
            format!(
                "the blob store {} does not answer: {}",
                store.name,
                chain(&e)
            )
        })?;
        match answer.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(format!(
                "the bucket {:?} does not exist at {}: create it (MinIO: mc mb; Ceph: s3cmd mb or radosgw-admin)",
                config.bucket, config.endpoint
            )),
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(format!(
                "the blob store {} refused blobs.s3.access_key {:?} and its secret (HTTP {}): check both and the bucket's policy",
                store.name,
                config.access_key,
                answer.status()
            )),
            s => Err(format!(
                "the blob store {} answered HTTP {s} for its bucket",
                store.name
            )),
        }
    }

    fn key(&self, sha256: &str) -> String {
        let dir = sha256.get(..2).unwrap_or("00");
        format!("{}{dir}/{sha256}.jpg", self.prefix)
    }

    /// `HEAD`: is the object there? `Err` when the store does not answer clearly.
    fn exists(&self, key: &str) -> io::Result<bool> {
        let url = self
            .bucket
            .head_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let status = self
            .runtime
            .block_on(async { self.client.head(url).send().await })
            .map_err(|e| other(format!("HEAD {key} at {}: {}", self.name, chain(&e))))?
            .status();
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(other(format!("HEAD {key} at {}: HTTP {s}", self.name))),
        }
    }

    /// The store's answer as an error, with the start of its body (S3 errors are XML that name the
    /// cause: `<Code>AccessDenied</Code>`...).
    async fn refusal(&self, what: &str, key: &str, response: reqwest::Response) -> io::Error {
        let status = response.status();
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        let key = if key.is_empty() {
            String::new()
        } else {
            format!(" {key}")
        };
        other(format!(
            "{what}{key} at {}: HTTP {status} {text}",
            self.name
        ))
    }

    /// Makes the bucket (tests, and a first set-up without the store's own tools).
    pub async fn create_bucket(&self) -> io::Result<()> {
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(SIGNED_FOR);
        let response = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .body(Vec::new())
            .send()
            .await
            .map_err(|e| other(format!("creating bucket {}: {}", self.name, chain(&e))))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.refusal("creating the bucket", "", response).await)
        }
    }
}

impl BlobStore for S3Store {
    fn put(&self, sha256: &str, bytes: &[u8]) -> io::Result<bool> {
        let key = self.key(sha256);
        if self.exists(&key)? {
            return Ok(false);
        }
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let body = bytes.to_vec();
        self.runtime.block_on(async {
            let response = self
                .client
                .put(url)
                .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
                .body(body)
                .send()
                .await
                .map_err(|e| other(format!("PUT {key} at {}: {}", self.name, chain(&e))))?;
            if response.status().is_success() {
                Ok(true)
            } else {
                Err(self.refusal("PUT", &key, response).await)
            }
        })
    }

    fn get(&self, sha256: &str) -> io::Result<Option<Vec<u8>>> {
        let key = self.key(sha256);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.runtime.block_on(async {
            let response = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| other(format!("GET {key} at {}: {}", self.name, chain(&e))))?;
            match response.status() {
                s if s.is_success() => response
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| other(format!("GET {key} at {}: {}", self.name, chain(&e)))),
                StatusCode::NOT_FOUND => Ok(None),
                _ => Err(self.refusal("GET", &key, response).await),
            }
        })
    }

    fn has(&self, sha256: &str) -> bool {
        match self.exists(&self.key(sha256)) {
            Ok(there) => there,
            Err(e) => {
                tracing::warn!(error = %e, "the blob store did not say whether it has an image");
                false
            }
        }
    }

    fn remove(&self, sha256: &str) -> io::Result<bool> {
        let key = self.key(sha256);
        // S3 answers a DELETE the same whether the object was there or not.
        if !self.exists(&key)? {
            return Ok(false);
        }
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.runtime.block_on(async {
            let response = self
                .client
                .delete(url)
                .send()
                .await
                .map_err(|e| other(format!("DELETE {key} at {}: {}", self.name, chain(&e))))?;
            if response.status().is_success() {
                Ok(true)
            } else {
                Err(self.refusal("DELETE", &key, response).await)
            }
        })
    }
}

/// An S3-compatible server for tests: moto's (`moto_server`, from `pip install 'moto[server]'`;
/// scripts/test installs it), started on a free port and killed when dropped. A machine without
/// it fails the test with that command rather than skipping it.
#[cfg(test)]
pub(crate) mod testing {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Moto {
        child: Child,
        pub port: u16,
    }

    impl Moto {
        pub fn start() -> Moto {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start moto_server ({e}): pip install 'moto[server]' (scripts/test installs it)")
                });
            let mut moto = Moto { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = moto.child.try_wait() {
                    panic!("moto_server exited at start: {status}");
                }
                assert!(
                    Instant::now() < deadline,
                    "moto_server did not open port {port}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            moto
        }

        pub fn config(&self, bucket: &str) -> crate::config::S3Config {
            crate::config::S3Config {
                endpoint: format!("http://127.0.0.1:{}", self.port),
                bucket: bucket.into(),
                region: "us-east-1".into(),
                prefix: "hub/".into(),
                access_key: "sunlight-test".into(),
                secret_key_file: None,
                secret_key: Some("sunlight-test-secret".into()),
                path_style: true,
                ca_file: None,
                timeout_secs: 10,
            }
        }

        /// A store on a new bucket of this server (opening it before the bucket exists fails with
        /// the reason).
        pub async fn store(&self, bucket: &str, runtime: tokio::runtime::Handle) -> super::S3Store {
            let config = self.config(bucket);
            let e = super::S3Store::open(&config, runtime.clone())
                .await
                .unwrap_err();
            assert!(e.contains("does not exist"), "{e}");
            // Make the bucket, then open for real.
            let store = super::S3Store::new(&config, runtime.clone()).unwrap();
            store.create_bucket().await.unwrap();
            super::S3Store::open(&config, runtime).await.unwrap()
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
