//! A fake SMS gateway / webhook for the notification tests: a real HTTP/1.1 server on a free port
//! that records every request (its `Idempotency-Key` and JSON body) and answers 200, or 503 while
//! it is switched "down".

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request the gateway saw.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: String,
    pub body: Value,
    /// Whether the gateway answered 200 (a delivery) or 503 (a failure).
    pub accepted: bool,
}

#[derive(Clone)]
pub struct Gateway {
    pub port: u16,
    seen: Arc<Mutex<Vec<Delivery>>>,
    down: Arc<AtomicBool>,
}

impl Gateway {
    pub fn start() -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind gateway");
        let port = listener.local_addr().expect("addr").port();
        let gateway = Gateway {
            port,
            seen: Arc::default(),
            down: Arc::default(),
        };
        let g = gateway.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || g.serve(stream));
            }
        });
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/sms", self.port)
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The keys of accepted deliveries, in arrival order.
    pub fn delivered(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|d| d.accepted)
            .map(|d| d.key)
            .collect()
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut stream = stream;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut key = String::new();
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "idempotency-key" => key = value.trim().to_owned(),
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let accepted = !self.down.load(Ordering::SeqCst);
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(Delivery {
                    key,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    accepted,
                });
            }
            let answer = if accepted {
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            } else {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown"
            };
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }
}
