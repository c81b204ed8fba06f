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
///
/// Lines end with `\n`, `\r\n` or a bare `\r`, as the SSE specification
/// allows; a `\r\n` split across two chunks still counts as one line end.
/// Every byte is examined a bounded number of times however the stream is
/// cut (once when searching for its line end, once when its event is
/// parsed), so the work is linear in the input: [`bytes_examined`]
/// counts it for tests that check exactly that.
///
/// [`bytes_examined`]: SseParser::bytes_examined
#[derive(Debug)]
pub struct SseParser {
    /// Raw bytes of the event in progress, from its first line to the last
    /// byte fed.
    pending: Vec<u8>,
    /// Where the search for the next line end resumes: the first byte of
    /// `pending` not examined yet. A partial line is never searched twice.
    scan_from: usize,
    /// Start of the current line inside `pending`.
    line_start: usize,
    /// The last line ended with `\r`: a `\n` right after it belongs to that
    /// line end, even when it arrives in the next chunk.
    skip_line_feed: bool,
    max_event_bytes: usize,
    bytes_examined: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            pending: Vec::new(),
            scan_from: 0,
            line_start: 0,
            skip_line_feed: false,
            max_event_bytes,
            bytes_examined: 0,
        }
    }

    /// Bytes held back because their event has not ended yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// How many bytes the parser has looked at so far (line-end searches
    /// plus event parsing). Tests use it to check that the work stays
    /// linear in the input however the input is split.
    pub fn bytes_examined(&self) -> u64 {
        self.bytes_examined
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
        self.feed_raw_with(chunk, |_, event| {
            if let Some(event) = event {
                sink(event);
            }
        })
    }

    /// Like [`feed_with`](Self::feed_with), for a filter that passes the
    /// stream on and may drop or rewrite events: `sink` gets the raw bytes of
    /// every completed event (its blank line included) with the event they
    /// parse to, or `None` for bytes that carry no event (comments only).
    ///
    /// Every byte fed reaches `sink` exactly once, in order, or stays pending.
    /// One case splits: when an event's blank line ends with a `\r` that ends
    /// a chunk and the next chunk starts with `\n`, the event is released at
    /// the `\r` (so bare-`\r` streams are not delayed) and that `\n` comes
    /// alone, with `None`, at the start of the next call.
    pub fn feed_raw_with(
        &mut self,
        chunk: &[u8],
        mut sink: impl FnMut(&[u8], Option<SseEvent>),
    ) -> Result<(), EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        let mut event_start = 0;
        loop {
            if self.skip_line_feed {
                match self.pending.get(self.scan_from) {
                    // The byte after the `\r` has not arrived yet.
                    None => break,
                    Some(b'\n') => {
                        if event_start == self.scan_from {
                            // The `\n` of a blank line whose event has gone.
                            sink(b"\n", None);
                            event_start += 1;
                        }
                        self.scan_from += 1;
                        self.line_start = self.scan_from;
                        self.bytes_examined += 1;
                    }
                    Some(_) => {}
                }
                self.skip_line_feed = false;
            }
            let rest = self.pending.get(self.scan_from..).unwrap_or_default();
            let Some(relative) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                // Remember how far we looked, so that the next chunk does not
                // search this partial line again.
                self.bytes_examined += rest.len() as u64;
                self.scan_from = self.pending.len();
                break;
            };
            let line_end = self.scan_from + relative;
            self.bytes_examined += relative as u64 + 1;
            let ends_with_cr = self.pending.get(line_end) == Some(&b'\r');
            let line_is_blank = line_end == self.line_start;
            self.scan_from = line_end + 1;
            if ends_with_cr {
                // Take the `\n` of a `\r\n` now when it is already here, so
                // that it stays with its line.
                if self.pending.get(self.scan_from) == Some(&b'\n') {
                    self.scan_from += 1;
                    self.bytes_examined += 1;
                } else {
                    self.skip_line_feed = true;
                }
            }
            if line_is_blank {
                // A blank line ends the event that began at `event_start`.
                let fields = self.pending.get(event_start..self.line_start).unwrap_or_default();
                self.bytes_examined += fields.len() as u64;
                let event = parse_event(fields);
                sink(self.pending.get(event_start..self.scan_from).unwrap_or_default(), event);
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
        self.finish_raw().1
    }

    /// Like [`finish`](Self::finish), also returning the raw bytes that
    /// were still pending.
    pub fn finish_raw(&mut self) -> (Vec<u8>, Option<SseEvent>) {
        let raw = self.take_pending();
        self.bytes_examined += raw.len() as u64;
        let event = parse_event(&raw);
        (raw, event)
    }

    /// Takes the unparsed tail as raw bytes, leaving the parser empty.
    pub fn take_pending(&mut self) -> Vec<u8> {
        self.scan_from = 0;
        self.line_start = 0;
        self.skip_line_feed = false;
        std::mem::take(&mut self.pending)
    }
}

/// Parses the lines of one event. Returns `None` for an event with no fields
/// (only comments, such as `: keep-alive`).
///
/// `raw` holds no blank line (a blank line ends an event), so splitting at
/// every `\r` and `\n` and skipping empty pieces yields exactly its lines
/// whichever line ends it uses.
fn parse_event(raw: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(raw);
    let mut event = SseEvent::default();
    let mut data_lines: Vec<&str> = Vec::new();
    let mut has_field = false;
    for line in text.split(['\r', '\n']) {
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

    /// The same events as ANTHROPIC_STREAM with bare `\r` line ends, and with
    /// all three kinds mixed.
    const BARE_CR_STREAM: &str = "event: message_start\rdata: {\"type\":\"message_start\"}\r\r\
event: content_block_delta\rdata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"日本\"}}\r\r\
event: message_stop\rdata: {\"type\":\"message_stop\"}\r\r";
    const MIXED_ENDINGS_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\"}\r\n\r\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"日本\"}}\r\r\n\
event: message_stop\rdata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn bare_cr_and_mixed_line_ends_give_the_same_events_as_crlf() {
        let expected = whole(ANTHROPIC_STREAM);
        assert_eq!(whole(BARE_CR_STREAM), expected);
        assert_eq!(whole(MIXED_ENDINGS_STREAM), expected);
    }

    #[test]
    fn bare_cr_events_are_released_as_they_end_not_at_finish() {
        let mut parser = SseParser::default();
        let events = parser.feed(b"data: one\r\rdata: two\r\r").unwrap();
        assert_eq!(events, vec![SseEvent::data("one"), SseEvent::data("two")]);
        assert_eq!(parser.pending_len(), 0);
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn crlf_split_between_two_feeds_is_one_line_end() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: a\r").unwrap().is_empty());
        // The `\n` completes the `\r\n` of the data line; only the next line end is blank.
        assert!(parser.feed(b"\n").unwrap().is_empty());
        assert_eq!(parser.feed(b"\r").unwrap(), vec![SseEvent::data("a")]);
        assert!(parser.feed(b"\ndata: b\r").unwrap().is_empty());
        assert_eq!(parser.feed(b"\n\r\n").unwrap(), vec![SseEvent::data("b")]);
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn bare_cr_streams_survive_every_split() {
        for stream in [BARE_CR_STREAM, MIXED_ENDINGS_STREAM] {
            let expected = whole(stream);
            let bytes = stream.as_bytes();
            for cut in 0..=bytes.len() {
                let mut parser = SseParser::default();
                let mut events = parser.feed(&bytes[..cut]).unwrap();
                events.extend(parser.feed(&bytes[cut..]).unwrap());
                events.extend(parser.finish());
                assert_eq!(events, expected, "split at {cut}");
            }
        }
    }

    #[test]
    fn raw_pieces_give_back_every_byte_once_at_every_split() {
        let streams = [OPENAI_STREAM, ANTHROPIC_STREAM, BARE_CR_STREAM, MIXED_ENDINGS_STREAM];
        for stream in streams {
            let expected = whole(stream);
            let bytes = stream.as_bytes();
            for cut in 0..=bytes.len() {
                let mut parser = SseParser::default();
                let mut wire = Vec::new();
                let mut events = Vec::new();
                for piece in [&bytes[..cut], &bytes[cut..]] {
                    parser
                        .feed_raw_with(piece, |raw, event| {
                            wire.extend_from_slice(raw);
                            events.extend(event);
                        })
                        .unwrap();
                }
                let (tail, last) = parser.finish_raw();
                wire.extend_from_slice(&tail);
                events.extend(last);
                assert_eq!(wire, bytes, "split at {cut}");
                assert_eq!(events, expected, "split at {cut}");
            }
        }
        // The one case where a `\n` comes alone: the blank line's `\r\n` cut in two.
        let mut parser = SseParser::default();
        let mut pieces: Vec<(Vec<u8>, bool)> = Vec::new();
        for chunk in [b"data: a\r\n\r".as_slice(), b"\ndata: b\r\n\r\n"] {
            parser.feed_raw_with(chunk, |raw, event| pieces.push((raw.to_vec(), event.is_some()))).unwrap();
        }
        let expected: Vec<(Vec<u8>, bool)> =
            vec![(b"data: a\r\n\r".to_vec(), true), (b"\n".to_vec(), false), (b"data: b\r\n\r\n".to_vec(), true)];
        assert_eq!(pieces, expected);
    }

    /// Feeds one `data:` line of `line_bytes` bytes in 16-byte pieces, then
    /// ends the event; returns the bytes examined.
    fn work_for_one_long_line(line_bytes: usize) -> u64 {
        let mut parser = SseParser::default();
        let mut wire = b"data: ".to_vec();
        wire.resize(line_bytes, b'7');
        for piece in wire.chunks(16) {
            assert!(parser.feed(piece).unwrap().is_empty());
        }
        assert_eq!(parser.feed(b"\n\n").unwrap().len(), 1);
        parser.bytes_examined()
    }

    #[test]
    fn a_long_line_in_small_pieces_is_examined_in_linear_work() {
        // Regression: the search for a line end used to restart at the start
        // of the pending line on every chunk (quadratic in the line length).
        let small = work_for_one_long_line(64 * 1024);
        let large = work_for_one_long_line(256 * 1024);
        // Each byte is looked at once for its line end and once when parsed.
        assert!(small <= 2 * 64 * 1024 + 16, "{small}");
        assert!(large <= 2 * 256 * 1024 + 16, "{large}");
        assert!(large <= 4 * small + 64, "4x input took {large} vs {small}");
    }

    #[test]
    fn many_small_events_in_odd_pieces_are_examined_in_linear_work() {
        let work = |events: usize| {
            let wire = "data: {\"x\":1}\r\n\r\n".repeat(events);
            let mut parser = SseParser::default();
            let mut count = 0;
            for piece in wire.as_bytes().chunks(7) {
                count += parser.feed(piece).unwrap().len();
            }
            assert_eq!(count, events);
            (parser.bytes_examined(), wire.len() as u64)
        };
        let (small, small_len) = work(1000);
        let (large, large_len) = work(4000);
        assert!(small <= 2 * small_len && large <= 2 * large_len, "{small}/{small_len} {large}/{large_len}");
    }

    #[test]
    fn one_byte_at_a_time_equals_whole() {
        for stream in [OPENAI_STREAM, ANTHROPIC_STREAM, BARE_CR_STREAM, MIXED_ENDINGS_STREAM] {
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
