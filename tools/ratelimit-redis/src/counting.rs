//! What a `ShouldRateLimit` call does to the counters: the descriptors are
//! turned into Redis keys (one per descriptor, fixed window and unit) and
//! changed by one Lua script, which Redis runs atomically.
//!
//! - A descriptor with a limit override (`requests_per_unit` per second,
//!   minute, hour or day) is counted in the fixed window of its unit that
//!   `now` falls in (windows aligned to the Unix epoch).
//! - Without the reservation marker ([`OP_KEY`] = [`OP_RESERVE`]), the hits
//!   are added whatever the outcome and the answer is OVER_LIMIT when the
//!   count passes the limit (the behaviour of envoyproxy/ratelimit). With
//!   it, the request is a reservation: all of its descriptors are counted,
//!   or none when one of them would pass its limit.
//! - A descriptor ending in a [`REFUND_KEY`] entry gives hits back to its
//!   window, floored at zero; a window that has expired is left alone.
//! - A descriptor without a limit override matches no limit: OK, not counted
//!   (this service has no configuration file of its own; the limits live in
//!   the gateway's configuration and arrive as overrides).

use crate::resp::{Connection, RedisError, Reply};
use aigw_shared::ratelimit_proto::{
    parse_refund_value, Code, Descriptor, LimitOverride, Request, Response, Status, OP_KEY, OP_RESERVE, REFUND_KEY,
};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// KEYS: the counters. ARGV[1]: mode (`reserve`, `charge`, `refund`),
/// ARGV[2]: hits, then per key its limit and its time to live in seconds.
/// Returns `{fits, value...}`: 1 when the reservation fitted (always 1 for
/// the other modes), and each counter's value afterwards.
pub const SCRIPT: &str = r#"
local mode = ARGV[1]
local hits = tonumber(ARGV[2])
local values = {}
local fits = 1
for i = 1, #KEYS do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  values[i] = current
  if mode == 'reserve' and current + hits > tonumber(ARGV[1 + 2 * i]) then fits = 0 end
end
for i = 1, #KEYS do
  if mode == 'refund' then
    if values[i] > 0 then
      values[i] = math.max(values[i] - hits, 0)
      redis.call('SET', KEYS[i], values[i], 'KEEPTTL')
    end
  elseif fits == 1 then
    values[i] = redis.call('INCRBY', KEYS[i], hits)
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 + 2 * i])) end
  end
end
table.insert(values, 1, fits)
return values
"#;

/// The Redis key of a descriptor's counter in one window.
pub fn counter_key(domain: &str, entries: &[(String, String)], window_seconds: u64, window: u64) -> String {
    // Length-prefixed, so that no choice of keys and values can make two descriptors collide.
    let mut key = format!("aigw-rl|{}:{domain}|", domain.len());
    for (name, value) in entries {
        key.push_str(&format!("{}:{name}={}:{value}|", name.len(), value.len()));
    }
    key.push_str(&format!("{window_seconds}|{window}"));
    key
}

/// A counter the call changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    descriptor: usize,
    key: String,
    limit: u64,
    window_seconds: u64,
    window: u64,
}

/// How each descriptor of a request is handled.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    reserve: bool,
    counted: Vec<Counted>,
    refunds: Vec<Counted>,
}

fn plan(request: &Request, now_seconds: u64) -> Plan {
    let marker = |d: &Descriptor| d.entries.len() == 1 && d.entry(OP_KEY) == Some(OP_RESERVE);
    let mut plan = Plan { reserve: request.descriptors.iter().any(marker), ..Plan::default() };
    for (index, descriptor) in request.descriptors.iter().enumerate() {
        if marker(descriptor) {
            continue;
        }
        if let Some(((name, value), rest)) = descriptor.entries.split_last() {
            if name == REFUND_KEY {
                if let Some((unit, window)) = parse_refund_value(value) {
                    let window_seconds = unit.seconds().unwrap_or(1);
                    plan.refunds.push(Counted {
                        descriptor: index,
                        key: counter_key(&request.domain, rest, window_seconds, window),
                        limit: 0,
                        window_seconds,
                        window,
                    });
                }
                continue;
            }
        }
        let Some(LimitOverride { requests_per_unit, unit }) = descriptor.limit else { continue };
        let Some(window_seconds) = unit.seconds() else { continue };
        let window = now_seconds / window_seconds;
        plan.counted.push(Counted {
            descriptor: index,
            key: counter_key(&request.domain, &descriptor.entries, window_seconds, window),
            limit: u64::from(requests_per_unit),
            window_seconds,
            window,
        });
    }
    plan
}

/// The counting side of the service: a pool of Redis connections.
pub struct Limiter {
    redis_address: String,
    idle: Mutex<Vec<Connection>>,
}

impl Limiter {
    pub fn new(redis_address: impl Into<String>) -> Limiter {
        Limiter { redis_address: redis_address.into(), idle: Mutex::new(Vec::new()) }
    }

    async fn run(&self, mode: &str, hits: u64, counters: &[Counted]) -> Result<(bool, Vec<u64>), RedisError> {
        // A pooled connection may have died with a Redis restart: then once more on a new one.
        let pooled = self.idle.lock().await.pop();
        if let Some(connection) = pooled {
            if let Ok(answer) = self.run_on(connection, mode, hits, counters).await {
                return Ok(answer);
            }
        }
        let connection = Connection::open(&self.redis_address).await?;
        self.run_on(connection, mode, hits, counters).await
    }

    async fn run_on(
        &self,
        mut connection: Connection,
        mode: &str,
        hits: u64,
        counters: &[Counted],
    ) -> Result<(bool, Vec<u64>), RedisError> {
        let count = counters.len().to_string();
        let hits = hits.to_string();
        let mut owned: Vec<String> = counters.iter().map(|c| c.key.clone()).collect();
        for counter in counters {
            owned.push(counter.limit.to_string());
            // Kept one window past its end, so that a late return still finds it.
            owned.push((2 * counter.window_seconds).to_string());
        }
        let mut args: Vec<&[u8]> = vec![b"EVAL", SCRIPT.as_bytes(), count.as_bytes()];
        args.extend(owned.iter().take(counters.len()).map(|s| s.as_bytes()));
        args.push(mode.as_bytes());
        args.push(hits.as_bytes());
        args.extend(owned.iter().skip(counters.len()).map(|s| s.as_bytes()));
        let reply = connection.command(&args).await?;
        // Only a connection that answered goes back to the pool.
        self.idle.lock().await.push(connection);
        let Reply::Array(items) = reply else { return Err(RedisError::Protocol("script reply is not an array")) };
        let numbers: Vec<u64> =
            items.iter().map(|item| if let Reply::Integer(n) = item { (*n).max(0) as u64 } else { 0 }).collect();
        let (fits, values) = numbers.split_first().ok_or(RedisError::Protocol("empty script reply"))?;
        if values.len() != counters.len() {
            return Err(RedisError::Protocol("script reply has the wrong length"));
        }
        Ok((*fits == 1, values.to_vec()))
    }

    /// Answers one `ShouldRateLimit` call. `Err` when Redis failed: the
    /// caller answers with a gRPC error, and the gateway applies its failure mode.
    pub async fn should_rate_limit(&self, request: &Request) -> Result<Response, RedisError> {
        let now_seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        self.should_rate_limit_at(request, now_seconds).await
    }

    pub async fn should_rate_limit_at(&self, request: &Request, now_seconds: u64) -> Result<Response, RedisError> {
        let plan = plan(request, now_seconds);
        let hits = u64::from(request.hits_addend.max(1));
        let ok = Status { code: Code::Ok, current_limit: None, limit_remaining: 0, duration_until_reset_seconds: None };
        let mut statuses = vec![ok; request.descriptors.len()];
        if !plan.refunds.is_empty() {
            self.run("refund", hits, &plan.refunds).await?;
        }
        if !plan.counted.is_empty() {
            let mode = if plan.reserve { "reserve" } else { "charge" };
            let (fits, values) = self.run(mode, hits, &plan.counted).await?;
            for (counter, value) in plan.counted.iter().zip(values) {
                let over = if fits { value > counter.limit } else { value.saturating_add(hits) > counter.limit };
                let Some(status) = statuses.get_mut(counter.descriptor) else { continue };
                let descriptor = request.descriptors.get(counter.descriptor);
                *status = Status {
                    code: if over { Code::OverLimit } else { Code::Ok },
                    current_limit: descriptor.and_then(|d| d.limit),
                    limit_remaining: u32::try_from(counter.limit.saturating_sub(value)).unwrap_or(u32::MAX),
                    duration_until_reset_seconds: Some(
                        (counter.window + 1).saturating_mul(counter.window_seconds).saturating_sub(now_seconds),
                    ),
                };
            }
        }
        let overall_code = if statuses.iter().any(|s| s.code == Code::OverLimit) { Code::OverLimit } else { Code::Ok };
        Ok(Response { overall_code, statuses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_shared::ratelimit_proto::{refund_value, Unit};

    fn descriptor(subject: &str, limit: u32) -> Descriptor {
        Descriptor {
            entries: vec![("rule".into(), "r".into()), ("subject".into(), subject.into())],
            limit: Some(LimitOverride { requests_per_unit: limit, unit: Unit::Minute }),
        }
    }

    #[test]
    fn descriptors_are_planned_by_their_shape() {
        let marker = Descriptor { entries: vec![(OP_KEY.into(), OP_RESERVE.into())], limit: None };
        let mut refund = descriptor("b", 0);
        refund.limit = None;
        refund.entries.push((REFUND_KEY.into(), refund_value(Unit::Hour, 7)));
        let unlimited = Descriptor { entries: vec![("x".into(), "y".into())], limit: None };
        let request = Request {
            domain: "d".into(),
            descriptors: vec![descriptor("a", 10), marker, refund, unlimited],
            hits_addend: 3,
        };
        let plan = plan(&request, 125);
        assert!(plan.reserve);
        assert_eq!(plan.counted.len(), 1);
        assert_eq!(plan.counted[0].key, "aigw-rl|1:d|4:rule=1:r|7:subject=1:a|60|2");
        assert_eq!(plan.refunds.len(), 1);
        assert_eq!(
            plan.refunds[0].key, "aigw-rl|1:d|4:rule=1:r|7:subject=1:b|3600|7",
            "the refund entry is not part of the key"
        );
    }

    #[test]
    fn keys_cannot_collide_through_separators() {
        let a = counter_key("d", &[("a|b".into(), "c".into())], 60, 1);
        let b = counter_key("d", &[("a".into(), "b|c".into())], 60, 1);
        assert_ne!(a, b);
    }
}
