//! A minimal HTTP/1.1 client over one keep-alive `TcpStream`: writes a
//! prebuilt request and reads the response (content-length or chunked),
//! handing each decoded body piece to a callback with the time its bytes
//! arrived. Enough for Envoy's responses; no TLS, no pipelining.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest response head we accept.
const MAX_HEAD: usize = 64 * 1024;

/// Builds a POST request with the given extra headers and body.
pub fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: bench.local\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// What a response was, once read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    pub status: u16,
    /// Decoded body bytes.
    pub body_bytes: usize,
    /// False when the server said `connection: close`.
    pub keep_alive: bool,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// One client connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// When the last read returned.
    last_read: Instant,
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn { stream, buf: Vec::with_capacity(16 * 1024), pos: 0, last_read: Instant::now() })
    }

    pub fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)
    }

    /// Reads more bytes into the buffer; error on EOF.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.last_read = Instant::now();
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(())
    }

    fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Reads one response. `on_head` gets the time the head was complete;
    /// `on_body` gets each decoded body piece with the time its last byte arrived.
    pub fn read_response(
        &mut self,
        on_head: &mut dyn FnMut(u16, Instant),
        on_body: &mut dyn FnMut(&[u8], Instant),
    ) -> io::Result<ResponseInfo> {
        let head_end = loop {
            if let Some(end) = find(self.pending(), b"\r\n\r\n") {
                break end;
            }
            if self.pending().len() > MAX_HEAD {
                return Err(invalid("response head too long"));
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(self.pending().get(..head_end).unwrap_or_default()).into_owned();
        self.pos += head_end + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked, mut keep_alive) = (None, false, true);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.parse::<usize>().map_err(|_| invalid("bad content-length"))?),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => keep_alive = !value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        on_head(status, self.last_read);
        let body_bytes = if chunked {
            self.read_chunked(on_body)?
        } else if let Some(length) = length {
            self.read_exact_body(length, on_body)?
        } else {
            return Err(invalid("response without content-length or chunked encoding"));
        };
        Ok(ResponseInfo { status, body_bytes, keep_alive })
    }

    fn read_exact_body(&mut self, length: usize, on_body: &mut dyn FnMut(&[u8], Instant)) -> io::Result<usize> {
        let mut left = length;
        while left > 0 {
            if self.pending().is_empty() {
                self.fill()?;
            }
            let take = left.min(self.pending().len());
            on_body(self.pending().get(..take).unwrap_or_default(), self.last_read);
            self.pos += take;
            left -= take;
        }
        Ok(length)
    }

    fn read_chunked(&mut self, on_body: &mut dyn FnMut(&[u8], Instant)) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let line_end = loop {
                if let Some(end) = find(self.pending(), b"\r\n") {
                    break end;
                }
                self.fill()?;
            };
            let line = String::from_utf8_lossy(self.pending().get(..line_end).unwrap_or_default()).into_owned();
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
            self.pos += line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                loop {
                    let end = loop {
                        if let Some(end) = find(self.pending(), b"\r\n") {
                            break end;
                        }
                        self.fill()?;
                    };
                    self.pos += end + 2;
                    if end == 0 {
                        return Ok(total);
                    }
                }
            }
            while self.pending().len() < size + 2 {
                self.fill()?;
            }
            on_body(self.pending().get(..size).unwrap_or_default(), self.last_read);
            total += size;
            self.pos += size + 2;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).unwrap();
            // Two responses back to back, written in small pieces.
            for piece in response.chunks(7).chain(response.chunks(7)) {
                socket.write_all(piece).unwrap();
            }
        });
        addr
    }

    #[test]
    fn reads_chunked_and_length_bodies_on_one_connection() {
        let addr =
            serve_once(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        let mut conn = Conn::connect(addr, Duration::from_secs(5)).unwrap();
        conn.send(&post("/v1/chat/completions", &[("x-a", "1")], b"{}")).unwrap();
        for _ in 0..2 {
            let mut body = Vec::new();
            let mut status_seen = 0;
            let info =
                conn.read_response(&mut |s, _| status_seen = s, &mut |piece, _| body.extend_from_slice(piece)).unwrap();
            assert_eq!(info.status, 200);
            assert_eq!(status_seen, 200);
            assert_eq!(body, b"hello world");
            assert_eq!(info.body_bytes, 11);
        }

        let addr = serve_once(b"HTTP/1.1 429 Too Many\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc");
        let mut conn = Conn::connect(addr, Duration::from_secs(5)).unwrap();
        conn.send(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut body = Vec::new();
        let info = conn.read_response(&mut |_, _| {}, &mut |piece, _| body.extend_from_slice(piece)).unwrap();
        assert_eq!((info.status, info.keep_alive, body.as_slice()), (429, false, &b"abc"[..]));
    }

    #[test]
    fn builds_a_post() {
        let request = post("/p", &[("x-mock-mode", "fixed:hi")], b"{\"a\":1}");
        let text = String::from_utf8(request).unwrap();
        assert!(text.starts_with("POST /p HTTP/1.1\r\n"));
        assert!(text.contains("content-length: 7\r\n"));
        assert!(text.ends_with("x-mock-mode: fixed:hi\r\n\r\n{\"a\":1}"));
    }
}
