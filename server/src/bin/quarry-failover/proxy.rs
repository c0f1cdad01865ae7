//! The harness's TCP proxies between the two nodes: a cut holds every
//! byte silently, as a network that drops packets would.

use anyhow::Result;

/// A TCP proxy to a local port that can be cut like a network: while cut,
/// nothing passes either way (bytes wait, as unacknowledged segments would;
/// new connections wait for the upstream connect), with no close or reset
/// to tell either end; healed, everything flows again.
pub struct Proxy {
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Listen on `listen`, forward to local port `to`.
    pub async fn start(listen: u16, to: u16) -> Result<Proxy> {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", listen)).await?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = l.accept().await {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut open = rx.clone();
                    if open.wait_for(|c| !*c).await.is_err() {
                        return;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::spawn(pump(ir, ow, rx.clone()));
                    tokio::spawn(pump(or, iw, rx));
                });
            }
        });
        Ok(Proxy { cut: tx })
    }

    /// Cut (`true`) or heal.
    pub fn cut(&self, on: bool) {
        let _ = self.cut.send(on);
    }
}

/// Copy bytes one way until either side closes, holding them while cut.
async fn pump(
    r: tokio::net::tcp::OwnedReadHalf,
    w: tokio::net::tcp::OwnedWriteHalf,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
        if r.readable().await.is_err() {
            return;
        }
        if *cut.borrow() {
            continue;
        }
        let n = match r.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut off = 0;
        while off < n {
            if w.writable().await.is_err() {
                return;
            }
            match w.try_write(&buf[off..n]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}
