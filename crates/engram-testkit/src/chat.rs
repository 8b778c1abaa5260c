//! A scripted OpenAI-compatible chat server for tests: it records each
//! request and answers from a script (a status and body, or never), so the
//! LLM extractor's happy path and every failure can be driven without a
//! model.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers to one request.
pub enum Script {
    /// A status and a JSON body.
    Reply(u16, String),
    /// Reads the request, then never answers.
    Hang,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Request line and headers, as sent.
    pub head: String,
    /// The JSON body.
    pub body: Value,
}

impl Recorded {
    /// A request header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// The content of the second (user) chat message.
    pub fn user_message(&self) -> String {
        self.body["messages"][1]["content"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// A one-request-per-connection HTTP/1.1 server answering from a script.
pub struct ChatServer {
    /// Base URL of the API (`http://127.0.0.1:<port>/v1`).
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl ChatServer {
    /// Starts answering on a free port of 127.0.0.1, one scripted answer per request.
    pub async fn start(script: Vec<Script>) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let recorded = requests.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let recorded = recorded.clone();
                let script = script.clone();
                tokio::spawn(async move { answer(stream, recorded, script).await });
            }
        });
        ChatServer { url, requests }
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(
    mut stream: TcpStream,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<Script>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the request ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed before the body ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
    let next = {
        recorded.lock().unwrap().push(Recorded { head, body });
        script
            .lock()
            .unwrap()
            .pop_front()
            .expect("an unscripted request")
    };
    match next {
        Script::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Script::Reply(status, body) => {
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    }
}

/// A 200 chat completion whose message content is `content`.
pub fn completion(content: &str, prompt_tokens: u64, completion_tokens: u64) -> Script {
    let body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens
        }
    });
    Script::Reply(200, body.to_string())
}
