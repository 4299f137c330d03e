//! IP cameras over HTTP: Hikvision (`/ISAPI/Streaming/channels/{ch}01/picture`), Dahua
//! (`/cgi-bin/snapshot.cgi?channel=N`) or any snapshot URL.
//!
//! A request goes out without credentials; a 401 brings the camera's challenges
//! (`WWW-Authenticate`), answered with Digest when the camera offers it (RFC 7616: MD5, MD5-sess,
//! SHA-256, qop=auth; through the `http-auth` crate, decision 0005) and with Basic otherwise. A
//! Digest nonce the camera calls stale is answered once more, uncounted. Every other refused login
//! counts: after `max_auth_failures` in a row the source stops asking, so that the camera does not
//! lock the account (Hikvision locks after a handful of wrong passwords), and the camera reports
//! [`CameraError::LoginsStopped`] until the agent restarts. The answer must be a JPEG: an HTML page
//! (a login or error page) is an error, not a snapshot.

use super::{CameraError, Capture, FrameSource};
use http_auth::{PasswordClient, PasswordParams};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use std::time::Duration;

/// Largest picture accepted (the hub's blob limit).
pub const MAX_IMAGE: usize = sunlight_protocol::blob::MAX_BLOB_BYTES;

pub struct HttpSource {
    url: reqwest::Url,
    /// The request target as Digest signs it: path and query.
    uri: String,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
    timeout: Duration,
    max_auth_failures: u32,
    auth_failures: u32,
}

impl HttpSource {
    pub fn new(
        url: &str,
        credentials: Option<(String, String)>,
        timeout: Duration,
        max_auth_failures: u32,
    ) -> Result<HttpSource, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("bad camera URL {url:?}: {e}"))?;
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            // A redirect would change what the Digest answer signs; name the real URL instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(HttpSource {
            url,
            uri,
            credentials,
            client,
            timeout,
            max_auth_failures: max_auth_failures.max(1),
            auth_failures: 0,
        })
    }

    async fn get(&self, authorization: Option<&str>) -> Result<reqwest::Response, CameraError> {
        let mut request = self.client.get(self.url.clone());
        if let Some(a) = authorization {
            request = request.header(AUTHORIZATION, a);
        }
        request.send().await.map_err(|e| self.transport(e))
    }

    fn transport(&self, e: reqwest::Error) -> CameraError {
        if e.is_timeout() {
            CameraError::Timeout(self.timeout.as_secs().max(1))
        } else {
            // The source chain says what failed (refused, no route, reset...).
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = format!("{detail}: {s}");
                source = s.source();
            }
            CameraError::Unreachable(detail)
        }
    }

    /// A refused login: counted, and the last one allowed stops the source.
    fn refused(&mut self, why: &str) -> CameraError {
        self.auth_failures += 1;
        if self.auth_failures >= self.max_auth_failures {
            CameraError::LoginsStopped {
                max: self.max_auth_failures,
            }
        } else {
            CameraError::Unauthorized {
                why: why.to_owned(),
                failures: self.auth_failures,
                max: self.max_auth_failures,
            }
        }
    }

    async fn fetch(&mut self) -> Result<Vec<u8>, CameraError> {
        if self.auth_failures >= self.max_auth_failures {
            return Err(CameraError::LoginsStopped {
                max: self.max_auth_failures,
            });
        }
        let mut response = self.get(None).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let Some((user, password)) = self.credentials.clone() else {
                return Err(self.refused(
                    "the camera asks for a login: set username and password (or password_file)",
                ));
            };
            let mut challenges = challenges(&response);
            // The second round only for a Digest nonce the camera calls stale.
            let mut rounds = 0;
            loop {
                rounds += 1;
                let authorization =
                    answer(&challenges, &user, &password, &self.uri).map_err(|e| {
                        CameraError::Status {
                            status: 401,
                            detail: format!("cannot answer the camera's login challenge: {e}"),
                        }
                    })?;
                response = self.get(Some(&authorization)).await?;
                if response.status() != StatusCode::UNAUTHORIZED {
                    break;
                }
                challenges = self::challenges(&response);
                if rounds >= 2 || !is_stale(&challenges) {
                    return Err(self.refused("username or password refused"));
                }
            }
        }
        self.auth_failures = 0;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let detail: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            return Err(CameraError::Status {
                status: status.as_u16(),
                detail: if status.is_redirection() {
                    "the camera redirects; set the camera's url to where it points".into()
                } else {
                    detail
                },
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if let Some(ct) = &content_type {
            if !matches!(
                ct.as_str(),
                "image/jpeg" | "image/jpg" | "image/pjpeg" | "application/octet-stream"
            ) {
                return Err(CameraError::NotJpeg(format!(
                    "the camera answered {ct} instead of image/jpeg (a login or error page?)"
                )));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(e))? {
            if body.len() + chunk.len() > MAX_IMAGE {
                return Err(CameraError::TooLarge(MAX_IMAGE));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl FrameSource for HttpSource {
    fn capture(&mut self) -> Capture<'_> {
        Box::pin(self.fetch())
    }
}

fn challenges(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn is_stale(challenges: &[String]) -> bool {
    let mut builder = PasswordClient::builder();
    for c in challenges {
        builder = builder.challenges(c);
    }
    matches!(builder.build(), Ok(PasswordClient::Digest(d)) if d.stale())
}

/// The `Authorization` value answering a camera's challenges (all its `WWW-Authenticate` values):
/// Digest when offered, else Basic.
pub fn answer(
    challenges: &[String],
    user: &str,
    password: &str,
    uri: &str,
) -> Result<String, String> {
    if challenges.is_empty() {
        return Err("the camera sent 401 without a WWW-Authenticate challenge".into());
    }
    let mut builder = PasswordClient::builder();
    for c in challenges {
        builder = builder.challenges(c);
    }
    let mut client = builder.build()?;
    // No body given: the answer uses qop=auth (auth-int would sign a body we do not send).
    client.respond(&PasswordParams {
        username: user,
        password,
        uri,
        method: "GET",
        body: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, StatusCode as Code, header};
    use axum::response::{IntoResponse, Response};
    use md5::{Digest, Md5};
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn md5_hex(s: &str) -> String {
        hex::encode(Md5::digest(s.as_bytes()))
    }

    /// `key="value", key=value` pairs of an Authorization header after its scheme.
    fn params(header: &str) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let mut rest = header.trim();
        while !rest.is_empty() {
            let Some((key, after)) = rest.split_once('=') else {
                break;
            };
            let key = key.trim().trim_start_matches(',').trim().to_owned();
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (
                    quoted[..end].to_owned(),
                    &quoted[(end + 1).min(quoted.len())..],
                )
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            out.insert(key, value);
            rest = next.trim_start().trim_start_matches(',').trim_start();
        }
        out
    }

    /// A fake IP camera and what it saw.
    #[derive(Clone)]
    pub struct FakeCamera {
        pub requests: Arc<AtomicU32>,
        pub logins_refused: Arc<AtomicU32>,
    }

    #[derive(Clone, Copy, PartialEq)]
    pub enum Behaviour {
        /// Digest (MD5 or MD5-sess per `sess`), with a Basic challenge offered too.
        Digest { sess: bool },
        /// Basic only (older Dahua firmware).
        Basic,
        /// 200 with a login page in HTML.
        Html,
        /// Accepts the connection and never answers.
        Hang,
        /// Digest whose first nonce is reported stale once.
        StaleOnce,
    }

    const USER: &str = "viewer";
    const PASSWORD: &str = "Circle of Life";
    const REALM: &str = "IP Camera(C1234)";

    fn jpeg() -> Response {
        (
            [(header::CONTENT_TYPE, "image/jpeg")],
            super::super::jpeg::generate(64, 48, 1, "fake ip camera"),
        )
            .into_response()
    }

    fn challenge(sess: bool, nonce: &str, stale: bool) -> Response {
        let algorithm = if sess { "MD5-sess" } else { "MD5" };
        let mut r = Code::UNAUTHORIZED.into_response();
        let digest = format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm={algorithm}{}",
            if stale { ", stale=TRUE" } else { "" }
        );
        r.headers_mut()
            .append(header::WWW_AUTHENTICATE, digest.parse().unwrap());
        r.headers_mut().append(
            header::WWW_AUTHENTICATE,
            format!("Basic realm=\"{REALM}\"").parse().unwrap(),
        );
        r
    }

    /// Whether a Digest answer is right, computed here independently (RFC 7616 §3.4.1–3.4.2).
    fn digest_ok(auth: &str, sess: bool, nonce: &str, uri: &str) -> bool {
        let Some(rest) = auth.strip_prefix("Digest ") else {
            return false;
        };
        let p = params(rest);
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let mut ha1 = md5_hex(&format!("{USER}:{REALM}:{PASSWORD}"));
        if sess {
            ha1 = md5_hex(&format!("{ha1}:{nonce}:{}", get("cnonce")));
        }
        let ha2 = md5_hex(&format!("GET:{uri}"));
        let expected = md5_hex(&format!(
            "{ha1}:{nonce}:{}:{}:{}:{ha2}",
            get("nc"),
            get("cnonce"),
            get("qop")
        ));
        get("username") == USER
            && get("realm") == REALM
            && get("uri") == uri
            && get("nonce") == nonce
            && get("qop") == "auth"
            && get("response") == expected
    }

    /// Starts a fake camera on a free port; returns its base URL and counters.
    pub async fn start(behaviour: Behaviour) -> (String, FakeCamera) {
        let seen = FakeCamera {
            requests: Arc::new(AtomicU32::new(0)),
            logins_refused: Arc::new(AtomicU32::new(0)),
        };
        let state = seen.clone();
        let handler = move |uri: axum::http::Uri, headers: HeaderMap| {
            let state = state.clone();
            async move {
                let n = state.requests.fetch_add(1, Ordering::SeqCst);
                let uri = uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                match behaviour {
                    Behaviour::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        jpeg()
                    }
                    Behaviour::Html => (
                        [(header::CONTENT_TYPE, "text/html")],
                        "<!DOCTYPE html><html><body>请登录 login</body></html>",
                    )
                        .into_response(),
                    Behaviour::Basic => {
                        use base64::Engine;
                        let good = format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD
                                .encode(format!("{USER}:{PASSWORD}"))
                        );
                        if auth == Some(good.as_str()) {
                            return jpeg();
                        }
                        if auth.is_some() {
                            state.logins_refused.fetch_add(1, Ordering::SeqCst);
                        }
                        let mut r = Code::UNAUTHORIZED.into_response();
                        r.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            format!("Basic realm=\"{REALM}\"").parse().unwrap(),
                        );
                        r
                    }
                    Behaviour::Digest { sess } => {
                        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
                        match auth {
                            Some(a) if digest_ok(a, sess, nonce, &uri) => jpeg(),
                            Some(_) => {
                                state.logins_refused.fetch_add(1, Ordering::SeqCst);
                                challenge(sess, nonce, false)
                            }
                            None => challenge(sess, nonce, false),
                        }
                    }
                    Behaviour::StaleOnce => {
                        // Request 0: challenge with nonce A; 1: answer with A → stale, nonce B; 2: ok.
                        match (n, auth) {
                            (0, _) | (_, None) => challenge(false, "nonce-a", false),
                            (1, Some(_)) => challenge(false, "nonce-b", true),
                            (_, Some(a)) if digest_ok(a, false, "nonce-b", &uri) => jpeg(),
                            (_, Some(_)) => {
                                state.logins_refused.fetch_add(1, Ordering::SeqCst);
                                challenge(false, "nonce-b", false)
                            }
                        }
                    }
                }
            }
        };
        let app = Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), seen)
    }

    fn source(url: &str, password: &str, timeout_ms: u64) -> HttpSource {
        HttpSource::new(
            url,
            Some((USER.into(), password.into())),
            Duration::from_millis(timeout_ms),
            3,
        )
        .unwrap()
    }

    #[test]
    fn digest_md5_with_qop_auth_matches_rfc_7616() {
        // RFC 7616 §3.9.1, through the same crate `answer` uses, with the RFC's cnonce.
        let challenge = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let Ok(PasswordClient::Digest(mut client)) = PasswordClient::try_from(challenge) else {
            panic!("a Digest client");
        };
        let answer = client
            .respond_with_testing_cnonce(
                &PasswordParams {
                    username: "Mufasa",
                    password: "Circle of Life",
                    uri: "/dir/index.html",
                    method: "GET",
                    body: None,
                },
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )
            .unwrap();
        assert!(
            answer.contains("response=\"8ca523f5e9506fed4657c9700eebdbec\""),
            "{answer}"
        );
        assert!(answer.contains("qop=auth") && answer.contains("nc=00000001"));
    }

    #[test]
    fn digest_is_preferred_basic_is_the_fallback() {
        let both = vec![
            "Basic realm=\"x\"".to_owned(),
            "Digest realm=\"x\", qop=\"auth\", nonce=\"n\"".to_owned(),
        ];
        assert!(answer(&both, "u", "p", "/").unwrap().starts_with("Digest "));
        let basic = vec!["Basic realm=\"x\"".to_owned()];
        assert_eq!(answer(&basic, "u", "p", "/").unwrap(), "Basic dTpw");
        assert!(answer(&[], "u", "p", "/").is_err());
        assert!(answer(&["Negotiate".to_owned()], "u", "p", "/").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_digest_camera_gives_its_jpeg_md5_and_md5_sess() {
        for sess in [false, true] {
            let (base, seen) = start(Behaviour::Digest { sess }).await;
            let url = format!("{base}/ISAPI/Streaming/channels/101/picture");
            let mut camera = source(&url, PASSWORD, 5000);
            for _ in 0..2 {
                let jpeg = camera.capture().await.unwrap();
                assert!(jpeg.starts_with(&super::super::jpeg::MAGIC));
            }
            assert_eq!(
                seen.requests.load(Ordering::SeqCst),
                4,
                "challenge + answer each"
            );
            assert_eq!(seen.logins_refused.load(Ordering::SeqCst), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_basic_only_camera_and_a_query_in_the_url() {
        let (base, _) = start(Behaviour::Basic).await;
        let mut camera = source(
            &format!("{base}/cgi-bin/snapshot.cgi?channel=2"),
            PASSWORD,
            5000,
        );
        assert!(camera.capture().await.is_ok());
        // Digest signs the path with its query.
        let (base, _) = start(Behaviour::Digest { sess: false }).await;
        let mut camera = source(
            &format!("{base}/cgi-bin/snapshot.cgi?channel=2"),
            PASSWORD,
            5000,
        );
        assert!(camera.capture().await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_nonce_is_answered_again_without_counting() {
        let (base, seen) = start(Behaviour::StaleOnce).await;
        let mut camera = source(&format!("{base}/snap.jpg"), PASSWORD, 5000);
        assert!(camera.capture().await.is_ok());
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(camera.auth_failures, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_passwords_stop_after_three_and_the_camera_hears_no_more() {
        for behaviour in [Behaviour::Digest { sess: false }, Behaviour::Basic] {
            let (base, seen) = start(behaviour).await;
            let mut camera = source(&format!("{base}/snap.jpg"), "wrong", 5000);
            let e1 = camera.capture().await.unwrap_err();
            assert!(
                matches!(
                    e1,
                    CameraError::Unauthorized {
                        failures: 1,
                        max: 3,
                        ..
                    }
                ),
                "{e1}"
            );
            assert!(camera.capture().await.is_err());
            let e3 = camera.capture().await.unwrap_err();
            assert!(matches!(e3, CameraError::LoginsStopped { max: 3 }), "{e3}");
            assert!(e3.to_string().contains("restart"), "{e3}");
            let asked = seen.requests.load(Ordering::SeqCst);
            for _ in 0..5 {
                assert!(matches!(
                    camera.capture().await,
                    Err(CameraError::LoginsStopped { .. })
                ));
            }
            assert_eq!(seen.requests.load(Ordering::SeqCst), asked, "no more tries");
            assert_eq!(seen.logins_refused.load(Ordering::SeqCst), 3);
        }
        // No credentials configured at all: counted the same way, with the fix in the message.
        let (base, _) = start(Behaviour::Basic).await;
        let mut camera =
            HttpSource::new(&format!("{base}/x"), None, Duration::from_secs(5), 3).unwrap();
        let e = camera.capture().await.unwrap_err();
        assert!(e.to_string().contains("set username and password"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn html_instead_of_a_jpeg_is_an_error() {
        let (base, _) = start(Behaviour::Html).await;
        let mut camera = source(&format!("{base}/snap.jpg"), PASSWORD, 5000);
        let e = camera.capture().await.unwrap_err();
        assert!(matches!(e, CameraError::NotJpeg(_)), "{e}");
        assert!(e.to_string().contains("text/html"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hanging_camera_times_out_and_an_absent_one_is_unreachable() {
        let (base, _) = start(Behaviour::Hang).await;
        let mut camera = source(&format!("{base}/snap.jpg"), PASSWORD, 300);
        let started = std::time::Instant::now();
        let e = camera.capture().await.unwrap_err();
        assert!(matches!(e, CameraError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Nobody listens on this port.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut camera = source(&format!("http://127.0.0.1:{port}/snap.jpg"), PASSWORD, 2000);
        let e = camera.capture().await.unwrap_err();
        assert!(matches!(e, CameraError::Unreachable(_)), "{e}");
    }
}
