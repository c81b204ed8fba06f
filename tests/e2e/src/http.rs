//! A small blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Tests need to see exactly what Envoy sends back, and when: status, headers
//! and raw body bytes (no transparent decompression), and a streamed body as
//! the pieces that arrived, each with the moment it arrived. A general client
//! would hide both, so this one is deliberately minimal: one request per
//! connection (`connection: close`), `content-length` or chunked bodies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single read may block before the request fails (a hung
/// gateway fails the test instead of hanging it).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body bytes as received (chunked framing removed, nothing decoded).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body in the message when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(err) => panic!("response body is not JSON ({err}); status {}: {}", self.status, self.text()),
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// One piece of a streamed body, and when it was read.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub at: Instant,
}

enum Framing {
    Chunked,
    Length(usize),
    UntilClose,
}

/// A response whose body is read piece by piece.
pub struct StreamingResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    framing: Framing,
    done: bool,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

impl StreamingResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next piece of the body as it arrived (one HTTP chunk for a chunked
    /// body, else one read), or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        let data = match self.framing {
            Framing::Chunked => {
                let size_line = read_line(&mut self.reader)?;
                let size_text = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size line {size_line:?}")))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !read_line(&mut self.reader)?.is_empty() {}
                    self.done = true;
                    return Ok(None);
                }
                let mut data = vec![0; size];
                self.reader.read_exact(&mut data)?;
                if !read_line(&mut self.reader)?.is_empty() {
                    return Err(invalid("chunk not followed by CRLF"));
                }
                data
            }
            Framing::Length(0) => {
                self.done = true;
                return Ok(None);
            }
            Framing::Length(remaining) => {
                let mut data = vec![0; remaining.min(64 * 1024)];
                let read = self.reader.read(&mut data)?;
                if read == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body shorter than content-length"));
                }
                data.truncate(read);
                self.framing = Framing::Length(remaining - read);
                data
            }
            Framing::UntilClose => {
                let mut data = vec![0; 64 * 1024];
                let read = self.reader.read(&mut data)?;
                if read == 0 {
                    self.done = true;
                    return Ok(None);
                }
                data.truncate(read);
                data
            }
        };
        Ok(Some(Chunk { data, at: Instant::now() }))
    }

    /// Reads every remaining piece.
    pub fn chunks(mut self) -> io::Result<Vec<Chunk>> {
        let mut chunks = Vec::new();
        while let Some(chunk) = self.next_chunk()? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Reads the rest of the body into a complete response.
    pub fn into_response(self) -> io::Result<HttpResponse> {
        let (status, headers) = (self.status, self.headers.clone());
        let body = self.chunks()?.into_iter().flat_map(|c| c.data).collect();
        Ok(HttpResponse { status, headers, body })
    }
}

/// Sends one request and returns once the response headers arrived.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<StreamingResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() && !has("content-type") {
        head.push_str("content-type: application/json\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let (status, headers) = loop {
        let status_line = read_line(&mut reader)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        // 1xx responses precede the real one.
        if !(100..200).contains(&status) {
            break (status, headers);
        }
    };
    let framing = if header(&headers, "transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        Framing::Chunked
    } else if let Some(length) = header(&headers, "content-length") {
        Framing::Length(length.parse().map_err(|_| invalid(format!("bad content-length {length:?}")))?)
    } else if status == 204 || status == 304 || method == "HEAD" {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    Ok(StreamingResponse { status, headers, reader, framing, done: false })
}

/// Sends one request and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    send(addr, method, path, headers, body)?.into_response()
}

/// Splits a text/event-stream body into its events' `data:` payloads
/// (multi-line data joined with `\n`), skipping comments.
pub fn sse_data(body: &str) -> Vec<String> {
    let normalized = body.replace("\r\n", "\n");
    normalized
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The text an OpenAI chat-completions SSE body carries: every
/// `choices[0].delta.content`, concatenated.
pub fn openai_stream_text(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter(|data| data.as_str() != "[DONE]")
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|event| event.pointer("/choices/0/delta/content").and_then(|c| c.as_str()).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_events() {
        let body = "data: {\"a\":1}\n\n: comment\n\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        assert_eq!(sse_data(body), ["{\"a\":1}", "one\ntwo", "[DONE]"]);
    }

    #[test]
    fn joins_openai_deltas() {
        let body = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(openai_stream_text(body), "Hello");
    }
}
