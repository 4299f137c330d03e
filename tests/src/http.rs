//! A small synchronous HTTP client for tests (reqwest on a private current-thread runtime).

pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
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
        }
    }

    pub fn get_json(&self, url: &str) -> Option<serde_json::Value> {
        self.rt
            .block_on(async { self.http.get(url).send().await.ok()?.json().await.ok() })
    }

    /// POSTs JSON; returns (status, body), or None when the request itself failed.
    pub fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Option<(u16, serde_json::Value)> {
        self.rt.block_on(async {
            let r = self.http.post(url).json(body).send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.json().await.unwrap_or_default()))
        })
    }
}

impl Client {
    /// GET returning (status, text), as a ZKTeco terminal reads its server.
    pub fn get_text(&self, url: &str) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self.http.get(url).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    }

    /// POST raw bytes returning (status, text).
    pub fn post_bytes(&self, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
        self.rt.block_on(async {
            let r = self.http.post(url).body(body).send().await.ok()?;
            Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
        })
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}
