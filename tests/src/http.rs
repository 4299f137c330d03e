//! A small synchronous HTTP client for tests (reqwest on a private current-thread runtime).
//!
//! A client may carry an API token ([`Client::set_bearer`]): the hub's `/api/v1/` needs one for
//! everything but the routes boxes call; the harness's [`crate::Hub`] sets its own.

use std::sync::Mutex;

pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    bearer: Mutex<Option<String>>,
}

impl Client {
    pub fn new() -> Client {
        Client {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("client"),
            bearer: Mutex::new(None),
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request from now on.
    pub fn set_bearer(&self, token: &str) {
        *self.bearer.lock().expect("bearer lock") = Some(token.to_owned());
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.bearer.lock().expect("bearer lock").as_deref() {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn get_json(&self, url: &str) -> Option<serde_json::Value> {
        self.rt.block_on(async {
            self.auth(self.http.get(url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        })
    }

    /// POSTs JSON; returns (status, body), or None when the request itself failed.
    pub fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Option<(u16, serde_json::Value)> {
        self.rt.block_on(async {
            let r = self
                .auth(self.http.post(url))
                .json(body)
                .send()
                .await
                .ok()?;
            let status = r.status().as_u16();
            Some((status, r.json().await.unwrap_or_default()))
        })
    }

    /// GET returning (status, text), as a ZKTeco terminal reads its server.
    pub fn get_text(&self, url: &str) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self.auth(self.http.get(url)).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    }

    /// GET returning (status, content type, bytes).
    pub fn get_full(&self, url: &str) -> Option<(u16, String, Vec<u8>)> {
        self.rt.block_on(async {
            let r = self.auth(self.http.get(url)).send().await.ok()?;
            let status = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Some((status, ctype, r.bytes().await.ok()?.to_vec()))
        })
    }

    /// POST raw bytes returning (status, text).
    pub fn post_bytes(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self
                .auth(self.http.post(url))
                .body(body)
                .send()
                .await
                .ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    }
}

impl Client {
    /// POSTs `body` saying it is `content_type`: (status, text).
    pub fn post_typed(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self
                .auth(self.http.post(url))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}
