//! A backend's webhook receiver on 127.0.0.1: it keeps every request it is
//! sent and answers each with one status (and headers), or never answers.
//! HTTP/1.1 just far enough for one `POST` per connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// By lowercase name.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

pub struct Receiver {
    /// Where it listens: `http://127.0.0.1:<port>/hook`.
    pub url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

/// What the receiver answers: `None` never answers.
type Answer = Option<(u16, Vec<(String, String)>)>;

impl Receiver {
    /// Answers every request with `status` and `headers`.
    pub async fn answering(status: u16, headers: &[(&str, &str)]) -> Self {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Self::start(Some((status, headers.collect()))).await
    }

    /// Reads every request and never answers.
    pub async fn silent() -> Self {
        Self::start(None).await
    }

    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, kept.clone(), answer.clone()));
            }
        });
        Self { url, got }
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn serve(mut conn: TcpStream, got: Arc<Mutex<Vec<Received>>>, answer: Answer) {
    let Some(request) = read_request(&mut conn).await else {
        return;
    };
    got.lock().unwrap().push(request);
    let Some((status, headers)) = answer else {
        std::future::pending::<()>().await;
        return;
    };
    let mut head =
        format!("HTTP/1.1 {status} Answer\r\ncontent-length: 0\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn read_request(conn: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut start = lines.next()?.split(' ');
    let (method, path) = (start.next()?.to_string(), start.next()?.to_string());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
