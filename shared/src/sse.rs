//! An incremental Server-Sent Events parser.
//!
//! Envoy hands a filter a streamed response in chunks cut wherever TCP and the
//! codec cut them: in the middle of a `data:` line, between `\r` and `\n`, or
//! inside a multi-byte UTF-8 character. [`SseParser`] keeps the unfinished
//! tail and yields only complete events, so feeding one byte at a time gives
//! exactly the events that feeding the whole body at once gives.
//!
//! The pending tail is capped: a peer that never ends an event cannot make
//! the filter buffer without bound.

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if any (Anthropic names every event; OpenAI none).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `retry:` field, if any, kept verbatim.
    pub retry: Option<String>,
}

impl SseEvent {
    /// A data-only event, as OpenAI sends them.
    pub fn data(data: impl Into<String>) -> Self {
        SseEvent { data: data.into(), ..Default::default() }
    }

    /// A named event with data, as Anthropic sends them.
    pub fn named(event: impl Into<String>, data: impl Into<String>) -> Self {
        SseEvent { event: Some(event.into()), data: data.into(), ..Default::default() }
    }

    /// OpenAI's end-of-stream marker, `data: [DONE]`.
    pub fn is_done_marker(&self) -> bool {
        self.data.trim() == "[DONE]"
    }

    /// The event in wire form, ending with the blank line that terminates it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(event) = &self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        if let Some(id) = &self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(retry) = &self.retry {
            out.push_str("retry: ");
            out.push_str(retry);
            out.push('\n');
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// The parser's pending tail grew past its cap without an event ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge {
    pub limit_bytes: usize,
}

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "an SSE event exceeded {} bytes without ending", self.limit_bytes)
    }
}

/// Default cap on one event: generous for tool-call deltas, small for a VM.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Incremental SSE parser. Feed it chunks; it returns the events they complete.
#[derive(Debug)]
pub struct SseParser {
    pending: Vec<u8>,
    /// Where the search for the next line end resumes, so that every byte is
    /// scanned once however the stream is split.
    scan_from: usize,
    /// Start of the current line inside `pending`.
    line_start: usize,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser { pending: Vec::new(), scan_from: 0, line_start: 0, max_event_bytes }
    }

    /// Bytes held back because their event has not ended yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds a chunk and returns every event it completes, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        self.feed_with(chunk, |event| events.push(event))?;
        Ok(events)
    }

    /// Like [`feed`](Self::feed) but hands each event to `sink` without
    /// collecting them.
    pub fn feed_with(&mut self, chunk: &[u8], mut sink: impl FnMut(SseEvent)) -> Result<(), EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut event_start = 0;
        while let Some(relative) =
            self.pending.get(self.scan_from..).and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        {
            let newline = self.scan_from + relative;
            let line = self.pending.get(self.line_start..newline).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.scan_from = newline + 1;
            if line.is_empty() {
                // A blank line ends the event that began at `event_start`.
                let raw = self.pending.get(event_start..self.line_start).unwrap_or_default();
                if let Some(event) = parse_event(raw) {
                    sink(event);
                }
                event_start = self.scan_from;
            }
            self.line_start = self.scan_from;
        }
        if event_start > 0 {
            self.pending.drain(..event_start);
            self.scan_from -= event_start;
            self.line_start -= event_start;
        }
        if self.pending.len() > self.max_event_bytes {
            return Err(EventTooLarge { limit_bytes: self.max_event_bytes });
        }
        Ok(())
    }

    /// Ends the stream. A final event that lacks its blank line is still
    /// returned (some servers close right after the last `data:` line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let raw = std::mem::take(&mut self.pending);
        self.scan_from = 0;
        self.line_start = 0;
        parse_event(&raw)
    }

    /// Takes the unparsed tail as raw bytes, leaving the parser empty.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.scan_from = 0;
        self.line_start = 0;
        std::mem::take(&mut self.pending)
    }
}

/// Parses the lines of one event. Returns `None` for an event with no fields
/// (only comments, such as `: keep-alive`).
fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = SseEvent::default();
    let mut data_lines: Vec<&str> = Vec::new();
    let mut has_field = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                data_lines.push(value);
                has_field = true;
            }
            "event" => {
                event.event = Some(value.to_string());
                has_field = true;
            }
            "id" => {
                event.id = Some(value.to_string());
                has_field = true;
            }
            "retry" => {
                event.retry = Some(value.to_string());
                has_field = true;
            }
            _ => {}
        }
    }
    if !has_field {
        return None;
    }
    event.data = data_lines.join("\n");
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_STREAM: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Héllo ✓\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\" world\"}}]}\n\n\
: keep-alive\n\n\
data: [DONE]\n\n";

    const ANTHROPIC_STREAM: &str = "event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"日本\"}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    fn whole(input: &str) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = parser.feed(input.as_bytes()).unwrap();
        events.extend(parser.finish());
        events
    }

    #[test]
    fn parses_openai_stream() {
        let events = whole(OPENAI_STREAM);
        assert_eq!(events.len(), 3);
        assert!(events[0].data.contains("Héllo ✓"));
        assert!(events[2].is_done_marker());
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn parses_anthropic_stream_with_crlf() {
        let events = whole(ANTHROPIC_STREAM);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[1].event.as_deref(), Some("content_block_delta"));
        assert!(events[1].data.contains("日本"));
        assert_eq!(events[2].data, "{\"type\":\"message_stop\"}");
    }

    #[test]
    fn every_split_offset_gives_the_same_events() {
        for stream in [OPENAI_STREAM, ANTHROPIC_STREAM] {
            let expected = whole(stream);
            let bytes = stream.as_bytes();
            for cut in 0..=bytes.len() {
                let mut parser = SseParser::default();
                let mut events = parser.feed(&bytes[..cut]).unwrap();
                events.extend(parser.feed(&bytes[cut..]).unwrap());
                events.extend(parser.finish());
                assert_eq!(events, expected, "split at {cut}");
            }
            for first in 0..bytes.len() {
                for second in first..=bytes.len() {
                    let mut parser = SseParser::default();
                    let mut events = parser.feed(&bytes[..first]).unwrap();
                    events.extend(parser.feed(&bytes[first..second]).unwrap());
                    events.extend(parser.feed(&bytes[second..]).unwrap());
                    events.extend(parser.finish());
                    assert_eq!(events, expected, "splits at {first} and {second}");
                }
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_equals_whole() {
        for stream in [OPENAI_STREAM, ANTHROPIC_STREAM] {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for byte in stream.as_bytes() {
                events.extend(parser.feed(std::slice::from_ref(byte)).unwrap());
            }
            events.extend(parser.finish());
            assert_eq!(events, whole(stream));
        }
    }

    #[test]
    fn multi_line_data_is_joined() {
        let events = whole("data: a\ndata: b\ndata:c\n\n");
        assert_eq!(events, vec![SseEvent::data("a\nb\nc")]);
    }

    #[test]
    fn pending_is_capped() {
        let mut parser = SseParser::new(16);
        assert!(parser.feed(b"data: 0123456").is_ok());
        assert_eq!(parser.feed(b"789abcdef").unwrap_err(), EventTooLarge { limit_bytes: 16 });
    }

    #[test]
    fn completed_events_are_released_from_pending() {
        let mut parser = SseParser::new(64);
        for _ in 0..1000 {
            assert_eq!(parser.feed(b"data: {\"x\":1}\n\n").unwrap().len(), 1);
        }
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn finish_returns_unterminated_final_event() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: last").unwrap().is_empty());
        assert_eq!(parser.finish(), Some(SseEvent::data("last")));
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn to_bytes_round_trips() {
        let events = vec![
            SseEvent::named("content_block_delta", "{\"a\":1}"),
            SseEvent::data("line1\nline2"),
            SseEvent { event: Some("x".into()), data: String::new(), id: Some("7".into()), retry: Some("100".into()) },
        ];
        let wire: Vec<u8> = events.iter().flat_map(|event| event.to_bytes()).collect();
        let mut parser = SseParser::default();
        assert_eq!(parser.feed(&wire).unwrap(), events);
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn take_pending_returns_raw_tail() {
        let mut parser = SseParser::default();
        parser.feed(b"data: a\n\ndata: partial").unwrap();
        assert_eq!(parser.take_pending(), b"data: partial");
        assert_eq!(parser.pending_len(), 0);
    }
}
