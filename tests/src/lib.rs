//! The harness of the end-to-end tests: start the real `oacis` binary on a data folder, find
//! the address it listens on, and talk HTTP/1.1 to it over loopback as any client would, or
//! subscribe over a WebSocket (`graphql-transport-ws`, [`Subscriber`]).
//!
//! The tests themselves live beside the binary (`api/tests/`), because Cargo builds a binary
//! and tells its path (`CARGO_BIN_EXE_oacis`) only to the integration tests of its own
//! package; they pass that path here.

pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// A running `oacis serve`; killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Everything it printed to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `bin serve --data dir --listen 127.0.0.1:0 args...` with `env`, and waits for
    /// the line that names its address.
    ///
    /// # Panics
    /// If the server exits before it serves.
    #[must_use]
    pub fn start(bin: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(bin);
        command.args(["serve", "--data"]).arg(dir).args(["--listen", "127.0.0.1:0"]).args(args);
        command.env("RUST_LOG", "warn").stderr(Stdio::piped()).stdout(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let mut lines = BufReader::new(stderr).lines();
        let printed = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("oacis serve exited before serving: {:?}", printed.lock().map(|p| p.clone()))
            };
            if let Ok(mut p) = printed.lock() {
                p.push(line.clone());
            }
            if let Some(rest) =
                line.strip_prefix("oacis: serving http://").or_else(|| line.strip_prefix("oacis: serving https://"))
            {
                break rest.trim_end_matches("/graphql").to_owned();
            }
        };
        // Keep draining stderr so that the server never blocks on a full pipe.
        let sink = printed.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut p) = sink.lock() {
                    p.push(line);
                }
            }
        });
        Server { child, addr, stderr: printed }
    }

    /// One HTTP/1.1 request; answers the status and the body.
    #[must_use]
    pub fn http(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
        http(&self.addr, method, path, token, body)
    }

    /// One HTTP/1.1 POST with a content type of its own (a multipart upload).
    #[must_use]
    pub fn post(&self, path: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> (u16, String) {
        request(&self.addr, "POST", path, token, content_type, body)
    }

    /// A GraphQL request that must answer 200; answers the JSON body.
    ///
    /// # Panics
    /// On another status or a body that is not JSON.
    #[must_use]
    pub fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        gql(&self.addr, token, query, variables)
    }

    /// A first sign-in: signs `name` in with `password`, changes it to `new` as a first
    /// sign-in must, and answers the token of the new session.
    ///
    /// # Panics
    /// If either step is refused.
    #[must_use]
    pub fn first_sign_in(&self, name: &str, password: &str, new: &str) -> String {
        first_sign_in(&self.addr, name, password, new)
    }

    /// Sends SIGTERM (with the system's `kill`) and waits for the process to exit; answers
    /// its exit status.
    ///
    /// # Panics
    /// If the signal cannot be sent.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        self.child.wait().unwrap_or_else(|e| panic!("wait: {e}"))
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GraphQL request to the server at `addr` that must answer 200; answers the JSON body.
///
/// # Panics
/// On another status or a body that is not JSON.
#[must_use]
pub fn gql(addr: &str, token: Option<&str>, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, body) = http(addr, "POST", "/graphql", token, body.as_bytes());
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// A first sign-in at `addr`: signs `name` in with `password`, changes it to `new` as a first
/// sign-in must, and answers the token of the new session.
///
/// # Panics
/// If either step is refused.
#[must_use]
pub fn first_sign_in(addr: &str, name: &str, password: &str, new: &str) -> String {
    let sign_in = "mutation($n: String!, $p: String!) { signIn(input: {name: $n, password: $p}) { token } }";
    let answer = gql(addr, None, sign_in, json!({ "n": name, "p": password }));
    let token = answer["data"]["signIn"]["token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();
    let change = "mutation($c: String!, $n: String!) { changePassword(current: $c, newPassword: $n) { token } }";
    let answer = gql(addr, Some(&token), change, json!({ "c": password, "n": new }));
    answer["data"]["changePassword"]["token"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned()
}

/// One HTTP/1.1 request to `addr`; answers the status and the body.
///
/// # Panics
/// If the connection cannot be made.
#[must_use]
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    request(addr, method, path, token, "application/json", body)
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = exchange(addr, method, path, token, &[("content-type", content_type)], body);
    (status, body)
}

/// One HTTP/1.1 request to `addr` with extra `headers`; answers the status, the response's
/// header block and its body.
///
/// # Panics
/// If the connection cannot be made.
#[must_use]
pub fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}{auth}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").map(|(h, b)| (h.to_owned(), b.to_owned())).unwrap_or_default();
    (status, head, body)
}

/// The `extensions.code` of the first error of a GraphQL answer (empty if none).
#[must_use]
pub fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// A `graphql-transport-ws` client over a blocking WebSocket: one connection, any number of
/// subscriptions by id.
#[derive(Debug)]
pub struct Subscriber {
    socket: tungstenite::WebSocket<TcpStream>,
}

impl Subscriber {
    /// Connects to `ws://addr/graphql` offering `protocol`, sends `connection_init` with
    /// `payload`, and waits for `connection_ack`. A refusal answers the HTTP status of the
    /// upgrade, or the close frame's code and reason.
    ///
    /// # Errors
    /// The refusal, in words.
    pub fn connect_with(addr: &str, protocol: &str, payload: Value) -> Result<Subscriber, String> {
        Subscriber::connect_with_headers(addr, protocol, &[], payload)
    }

    /// [`Subscriber::connect_with`], the upgrade request also carrying `headers` (an
    /// `Origin`, an `Authorization`).
    ///
    /// # Errors
    /// The refusal, in words.
    pub fn connect_with_headers(
        addr: &str,
        protocol: &str,
        headers: &[(&'static str, &str)],
        payload: Value,
    ) -> Result<Subscriber, String> {
        use tungstenite::client::IntoClientRequest as _;
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        let mut request = format!("ws://{addr}/graphql").into_client_request().map_err(|e| e.to_string())?;
        let offered = protocol.parse().map_err(|e| format!("{e}"))?;
        request.headers_mut().insert("sec-websocket-protocol", offered);
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().map_err(|e| format!("{e}"))?);
        }
        let (socket, _) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::handshake::HandshakeError::Failure(tungstenite::Error::Http(response)) => {
                format!("HTTP {}", response.status().as_u16())
            }
            other => other.to_string(),
        })?;
        let mut subscriber = Subscriber { socket };
        subscriber.send(&json!({ "type": "connection_init", "payload": payload }));
        let ack = subscriber.message()?;
        if ack["type"] == "connection_ack" {
            Ok(subscriber)
        } else {
            Err(format!("expected connection_ack, got {ack}"))
        }
    }

    /// [`Subscriber::connect_with`] `graphql-transport-ws`, with `{"authorization": "Bearer
    /// <token>"}` (or an empty payload).
    ///
    /// # Errors
    /// The refusal, in words.
    pub fn connect(addr: &str, token: Option<&str>) -> Result<Subscriber, String> {
        let payload = token.map_or_else(|| json!({}), |t| json!({ "authorization": format!("Bearer {t}") }));
        Subscriber::connect_with(addr, "graphql-transport-ws", payload)
    }

    /// Starts the operation `query` with `variables` as subscription `id`.
    pub fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(&json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }));
    }

    /// The next `next`, `error` or `complete` message (pings are answered on the way).
    ///
    /// # Panics
    /// When the connection closes or nothing comes within 30 s.
    pub fn receive(&mut self) -> Value {
        self.message().unwrap_or_else(|e| panic!("{e}"))
    }

    fn message(&mut self) -> Result<Value, String> {
        loop {
            let message = self.socket.read().map_err(|e| format!("read: {e}"))?;
            match message {
                tungstenite::Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).map_err(|e| format!("{e}: {text}"))?;
                    if value["type"] == "ping" {
                        self.send(&json!({ "type": "pong" }));
                        continue;
                    }
                    return Ok(value);
                }
                tungstenite::Message::Close(frame) => {
                    return Err(frame.map_or_else(
                        || "closed".to_owned(),
                        |f| format!("closed {}: {}", u16::from(f.code), f.reason),
                    ))
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, message: &Value) {
        let text = message.to_string();
        self.socket.send(tungstenite::Message::text(text)).unwrap_or_else(|e| panic!("send: {e}"));
    }
}
