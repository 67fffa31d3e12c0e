//! Token buckets that refill continuously, one hash per workspace with a level per bucket
//! and the time of its last change. Time is Redis's own (`TIME`), so the replicas' clocks
//! never disagree about a refill.

use crate::{Coordination, Error};

/// What both scripts start with: the buckets of `KEYS[1]` (capacities per minute in
/// `ARGV[1..n]`, `GROUPS` groups of `n` arguments in all) refilled to now; `level(k)` is
/// bucket `k`'s level, capped at capacity.
const REFILL: &str = r"
local n = #ARGV / GROUPS
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local stored = redis.call('HGETALL', KEYS[1])
local fields = {}
for i = 1, #stored, 2 do fields[stored[i]] = tonumber(stored[i + 1]) end
local since = ms - (fields['t'] or ms)
local function level(k)
  local cap = tonumber(ARGV[k])
  return math.min(cap, (fields['b' .. k] or cap) + since * cap / 60000)
end
";

/// Takes `ARGV[n+1..2n]` from each bucket if every one has enough, and the lease
/// `ARGV[2n+1..3n]` on top when every bucket has that much more. Returns the index
/// (1-based) of the first bucket that had not enough (0 when all were taken), 1 when the
/// lease was taken too, and the levels after.
const TAKE: &str = r"
local levels = {}
for k = 1, n do levels[k] = level(k) end
local leased = 0
for k = 1, n do
  if tonumber(ARGV[2 * n + k]) > 0 then leased = 1 end
end
local short = 0
for k = 1, n do
  local amount = tonumber(ARGV[n + k])
  local lease = tonumber(ARGV[2 * n + k])
  if levels[k] < amount + lease then leased = 0 end
  if short == 0 and levels[k] < math.min(amount, tonumber(ARGV[k])) then short = k end
end
if short ~= 0 then leased = 0 end
if short == 0 then
  for k = 1, n do
    levels[k] = levels[k] - tonumber(ARGV[n + k]) - leased * tonumber(ARGV[2 * n + k])
  end
end
local out = {short, leased}
local set = {'t', ms}
for k = 1, n do
  table.insert(out, tostring(levels[k]))
  table.insert(set, 'b' .. k)
  table.insert(set, tostring(levels[k]))
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('PEXPIRE', KEYS[1], 120000)
return out
";

/// Adds `ARGV[n+1..2n]` (negative: takes) to each bucket, capped at its capacity: what a
/// request reserved and did not use flows back.
const GIVE_BACK: &str = r"
local set = {'t', ms}
for k = 1, n do
  table.insert(set, 'b' .. k)
  table.insert(set, tostring(math.min(tonumber(ARGV[k]), level(k) + tonumber(ARGV[n + k]))))
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('PEXPIRE', KEYS[1], 120000)
return 1
";

pub(crate) fn take_script() -> redis::Script {
    redis::Script::new(&format!("{}{TAKE}", REFILL.replace("GROUPS", "3")))
}

pub(crate) fn give_back_script() -> redis::Script {
    redis::Script::new(&format!("{}{GIVE_BACK}", REFILL.replace("GROUPS", "2")))
}

/// What [`Coordination::take`] came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    /// The first bucket (by index) that lacked its amount; nothing was taken then.
    pub short: Option<usize>,
    /// Whether the lease asked for was taken as well as the amounts.
    pub leased: bool,
    /// Every bucket's level after the call.
    pub levels: Vec<f64>,
}

impl Coordination {
    /// Takes `amounts` from the buckets named `key` (capacities per minute in `capacities`),
    /// all or none; and `lease` on top (a replica's stock for later requests) when every
    /// bucket holds that much more, else no lease.
    pub async fn take(
        &self,
        key: &str,
        capacities: &[f64],
        amounts: &[f64],
        lease: &[f64],
    ) -> Result<Take, Error> {
        let key = self.key(&["buckets", key]);
        let args: Vec<f64> = capacities
            .iter()
            .chain(amounts)
            .chain(lease)
            .copied()
            .collect();
        let reply: Vec<String> = self
            .call_async(move |mut c, scripts| async move {
                let mut invocation = scripts.take.key(&key);
                for arg in &args {
                    invocation.arg(*arg);
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        let mut values = reply.iter().map(|v| v.parse::<f64>().unwrap_or(0.0));
        let short = values.next().unwrap_or(0.0) as usize;
        let leased = values.next().unwrap_or(0.0) == 1.0;
        Ok(Take {
            short: short.checked_sub(1),
            leased,
            levels: values.collect(),
        })
    }

    /// Adds `amounts` back (negative amounts take), without waiting.
    pub fn give_back(&self, key: &str, capacities: &[f64], amounts: &[f64]) {
        let key = self.key(&["buckets", key]);
        let args: Vec<f64> = capacities.iter().chain(amounts).copied().collect();
        self.send("rate-limit settle", move |mut c, scripts| async move {
            let mut invocation = scripts.give_back.key(&key);
            for arg in &args {
                invocation.arg(*arg);
            }
            invocation.invoke_async::<i64>(&mut c).await.map(|_| ())
        });
    }
}
