//! A fault-injecting TCP proxy for the network-cut tests: it forwards agent ↔ broker traffic until
//! told to cut, then drops every connection and refuses new ones until restored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct FaultProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
    epoch_n: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl FaultProxy {
    /// Listens on a free port and forwards to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let epoch_rx = epoch.subscribe();
        let c = cut.clone();
        rt.spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut stop = epoch_rx.clone();
                // Only a cut after this connection was accepted ends it.
                stop.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = ri.read(&mut buf).await {
                            if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = ro.read(&mut buf).await {
                            if n == 0 || wi.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    tokio::select! { _ = up => {}, _ = down => {}, _ = stop.changed() => {} }
                });
            }
        });
        FaultProxy {
            port,
            cut,
            epoch,
            epoch_n: Arc::new(AtomicU64::new(0)),
            _rt: rt,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let n = self.epoch_n.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.epoch.send(n);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
