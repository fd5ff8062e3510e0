//! Talking to a Salve server: `--server URL` (or `SALVE_SERVER`), the token from `SALVE_TOKEN`,
//! sent as a bearer header (never in a URL).

use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The Salve server's URL.
    #[arg(long, env = "SALVE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

/// Why a call to the server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    Unreachable(String),
    /// The API's error: its status and message.
    Refused {
        status: u16,
        message: String,
    },
    Unreadable(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unreachable(m) | ClientError::Unreadable(m) => f.write_str(m),
            ClientError::Refused { status, message } => write!(f, "the server said {status}: {message}"),
        }
    }
}

impl From<ClientError> for String {
    fn from(e: ClientError) -> String {
        e.to_string()
    }
}

impl From<ClientError> for salve_heal::CiError {
    fn from(e: ClientError) -> salve_heal::CiError {
        match e {
            ClientError::Unreachable(m) => salve_heal::CiError::Unreachable(m),
            ClientError::Refused { status, message } => salve_heal::CiError::Refused { status, message },
            ClientError::Unreadable(m) => salve_heal::CiError::Unreadable(m),
        }
    }
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client, String> {
        let token = std::env::var("SALVE_TOKEN").unwrap_or_default();
        if token.trim().is_empty() {
            return Err(
                "set SALVE_TOKEN to an API token (`salve token create NAME --data-dir DIR` makes one on the server's machine)"
                    .into(),
            );
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(None)
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        Ok(Client { base: args.server.trim_end_matches('/').to_owned(), token: token.trim().to_owned(), http })
    }

    /// A client for `base` with `token` (the demo's own server).
    pub fn with_token(base: &str, token: &str) -> Result<Client, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    /// A client for `base` with `token` whose calls may take up to `seconds` (an agent's claims
    /// wait for work).
    pub fn with_timeout(base: &str, token: &str, seconds: u64) -> Result<Client, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(seconds))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot start an HTTP client: {e}"))?;
        Ok(Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs raw bytes (a log chunk) to `path` with `query`.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        bytes: Vec<u8>,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .query(query)
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.read(self.send(request)?)
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| ClientError::Unreachable(format!("cannot reach the Salve server at {}: {e}", self.base)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let message =
            response.json::<salve_contract::api::Error>().map_or_else(|_| status.to_string(), |e| e.error.message);
        Err(ClientError::Refused { status: status.as_u16(), message })
    }

    /// The answer as the contract's type `T` (or a `Value`).
    fn read<T: DeserializeOwned>(&self, response: reqwest::blocking::Response) -> Result<T, ClientError> {
        response.json().map_err(|e| {
            ClientError::Unreadable(format!(
                "the Salve server at {} answered what this salve cannot read: {e}",
                self.base
            ))
        })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.read(self.send(self.http.get(format!("{}{path}", self.base)))?)
    }

    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T, ClientError> {
        self.read(self.send(self.http.post(format!("{}{path}", self.base)).json(body))?)
    }

    /// A POST whose answer matters whatever its status (a 409 that says what exists): the
    /// status and the JSON body.
    pub fn post_any(&self, path: &str, body: &impl Serialize) -> Result<(u16, Value), ClientError> {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body).send().map_err(|e| {
                ClientError::Unreachable(format!("cannot reach the Salve server at {}: {e}", self.base))
            })?;
        let status = response.status().as_u16();
        Ok((status, response.json().unwrap_or(Value::Null)))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.read(self.send(self.http.delete(format!("{}{path}", self.base)))?)
    }

    /// A Server-Sent Events stream: calls `f(event, id, data)` for each event until it returns
    /// false or the stream ends.
    pub fn events(&self, path: &str, mut f: impl FnMut(&str, &str, &str) -> bool) -> Result<(), String> {
        use std::io::BufRead as _;
        let response =
            self.send(self.http.get(format!("{}{path}", self.base)).header("accept", "text/event-stream"))?;
        let reader = std::io::BufReader::new(response);
        let (mut event, mut id, mut data) = (String::new(), String::new(), Vec::<String>::new());
        for line in reader.lines() {
            let line = line.map_err(|e| format!("the event stream broke: {e}"))?;
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    let name = if event.is_empty() { "message" } else { &event };
                    if !f(name, &id, &data.join("\n")) {
                        return Ok(());
                    }
                }
                event.clear();
                data.clear();
                continue;
            }
            let (field, value) =
                line.split_once(':').map_or((line.as_str(), ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "event" => event = value.to_owned(),
                "id" => id = value.to_owned(),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Query-string encoding of one value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
