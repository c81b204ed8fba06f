//! A minimal Redis client: RESP2 commands over one TCP connection. The
//! service needs two commands (EVAL and PING), so a client crate would be
//! more code than it saves.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// What went wrong talking to Redis.
#[derive(Debug)]
pub enum RedisError {
    Io(std::io::Error),
    Protocol(&'static str),
    Server(String),
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Io(err) => write!(f, "redis i/o: {err}"),
            RedisError::Protocol(what) => write!(f, "redis protocol: {what}"),
            RedisError::Server(message) => write!(f, "redis error: {message}"),
        }
    }
}

impl From<std::io::Error> for RedisError {
    fn from(err: std::io::Error) -> Self {
        RedisError::Io(err)
    }
}

pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    pub async fn open(address: &str) -> Result<Connection, RedisError> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream: BufReader::new(stream) })
    }

    /// Sends one command and reads its reply. A server error reply is `Err(Server)`.
    pub async fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.stream.get_mut().write_all(&encode_command(args)).await?;
        match read_reply(&mut self.stream).await? {
            Reply::Error(message) => Err(RedisError::Server(message)),
            reply => Ok(reply),
        }
    }
}

pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> Result<String, RedisError> {
    let mut line = Vec::new();
    stream.read_until(b'\n', &mut line).await?;
    if !line.ends_with(b"\r\n") {
        return Err(RedisError::Protocol("connection closed mid-reply"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RedisError::Protocol("reply line is not UTF-8"))
}

fn read_reply(
    stream: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RedisError>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let (kind, rest) = line.split_at_checked(1).ok_or(RedisError::Protocol("empty reply line"))?;
        let number = || rest.parse::<i64>().map_err(|_| RedisError::Protocol("bad length"));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Integer(number()?),
            "$" => match usize::try_from(number()?) {
                Err(_) => Reply::Bulk(None),
                Ok(len) => {
                    let mut bytes = vec![0; len + 2];
                    stream.read_exact(&mut bytes).await?;
                    bytes.truncate(len);
                    Reply::Bulk(Some(bytes))
                }
            },
            "*" => match usize::try_from(number()?) {
                Err(_) => Reply::Array(Vec::new()),
                Ok(count) => {
                    let mut items = Vec::with_capacity(count.min(1024));
                    for _ in 0..count {
                        items.push(read_reply(stream).await?);
                    }
                    Reply::Array(items)
                }
            },
            _ => return Err(RedisError::Protocol("unknown reply type")),
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(super::encode_command(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
