"""Redis-backed scheduler state shared by gateway replicas (JIT paper 5.5 on a stateless gateway).

Every operation of :class:`~fedfaas.jit.state.SchedulerState` is one Lua
script, so it is atomic on the Redis server: two gateway replicas ticking at
the same moment cannot both advance a task's launch cursor, both fire a timer
or both take over an expired claim.  Its keys are the task, arrival-log,
queue, timer, claim and lease keys of the JIT section of :mod:`fedfaas.keys`,
under the state's namespace.

Claims are leases in scheduler-clock seconds (replicas share a clock through
NTP, as they already do for timers); a replica that stops renewing loses its
decisions to the next replica whose tick finds the lease expired.  Scripts
touch keys derived from arguments, so this targets a single Redis (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import redis

from fedfaas import keys
from fedfaas.errors import BadRequest, Conflict, Unavailable
from fedfaas.jit.state import Decision, TaskRecord

_LIB = """
local function load(k)
  local raw = redis.call('GET', k)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function isnull(v) return v == nil or v == cjson.null end
"""

_CREATE = _LIB + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4]) end
return 1
"""

_ARRIVE = _LIB + """
local t = load(KEYS[1])
if not t then return {-1, ''} end
local n_times = tonumber(ARGV[1])
if t.status ~= 'open' or not isnull(t.closed_at) then return {0, cjson.encode(t)} end
local n = math.min(n_times, t.n_expected - t.n_arrived)
if n <= 0 then return {0, cjson.encode(t)} end
-- The log stays sorted: an update recorded after a later-stamped one (replicas racing)
-- counts as arriving with it.  Times are logged with cjson's 14 significant digits, the
-- precision of the task's last_arrival and closed_at, so a close equals its last arrival.
local last = t.last_arrival
local with_ids = ARGV[2 + n_times] == '1'
local added = 0
for i = 1, n do
  -- An update already recorded (its arrival event handled twice) counts once.
  local id = with_ids and ARGV[2 + n_times + i] or nil
  if not (id and redis.call('LPOS', KEYS[3], id)) then
    local v = tonumber(string.format('%.14g', tonumber(ARGV[1 + i])))
    if not isnull(last) and v < last then v = last end
    redis.call('RPUSH', KEYS[2], string.format('%.14g', v))
    if id then redis.call('RPUSH', KEYS[3], id) end
    last = v
    added = added + 1
  end
end
n = added
if n == 0 then return {0, cjson.encode(t)} end
t.n_arrived = t.n_arrived + n
t.last_arrival = last
if t.n_arrived >= t.n_expected then t.closed_at = t.last_arrival end
local raw = cjson.encode(t)
redis.call('SET', KEYS[1], raw)
return {n, raw}
"""

_FIRE = _LIB + """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
local t = load(KEYS[1])
if not t then return 0 end
if isnull(t.forced_at) then t.forced_at = t.timer_at end
redis.call('SET', KEYS[1], cjson.encode(t))
return 1
"""

_CLOSE = _LIB + """
local t = load(KEYS[1])
if not t or t.status ~= 'open' or not isnull(t.closed_at) then return 0 end
t.closed_at = tonumber(ARGV[1])
t.status = ARGV[2]
t.epoch = t.epoch + 1
if t.status ~= 'open' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[1], cjson.encode(t))
return 1
"""

_COMMIT = _LIB + """
local t = load(KEYS[1])
if not t then return 0 end
if t.epoch ~= tonumber(ARGV[1]) or t.status ~= 'open' then return 0 end
local n_inv = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local running = tonumber(redis.call('GET', KEYS[2]) or '0')
if cap >= 0 and running + n_inv > cap then return 0 end
t.n_launched = tonumber(ARGV[2])
t.running = t.running + n_inv
redis.call('INCRBY', KEYS[2], n_inv)
if ARGV[5] ~= '' then t.resume = cjson.decode(ARGV[5]) end
if ARGV[6] ~= '' then t.status = ARGV[6] end
t.epoch = t.epoch + 1
redis.call('SET', KEYS[1], cjson.encode(t))
local n_dec = tonumber(ARGV[7])
for i = 0, n_dec - 1 do
  local id = ARGV[8 + 3 * i]
  redis.call('HSET', KEYS[3], id, ARGV[9 + 3 * i])
  redis.call('ZADD', KEYS[4], ARGV[10 + 3 * i], id)
end
return 1
"""

_COMPLETE = _LIB + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
local d = cjson.decode(raw)
local tkey = ARGV[4] .. d.job_id .. '/' .. tostring(d.round)
local t = load(tkey)
local n_inv = 1
if d.kind == 'aggregate' then n_inv = #d.first end
local part = tonumber(ARGV[2])
local n_fused = tonumber(ARGV[3])
if part >= n_inv then return redis.error_reply('no such part') end
local done = {}
for _, p in ipairs(d.parts_done) do done[p] = true end
local todo = 0
for p = 0, n_inv - 1 do
  if (part < 0 or p == part) and not done[p] then
    todo = todo + 1
    table.insert(d.parts_done, p)
    if d.kind == 'aggregate' and n_fused >= 0 and n_fused < d.count[p + 1] then
      table.insert(t.resume, {d.first[p + 1] + n_fused, d.count[p + 1] - n_fused})
    end
  end
end
t.running = t.running - todo
t.epoch = t.epoch + 1
redis.call('DECRBY', KEYS[3], todo)
if #d.parts_done >= n_inv then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  if d.kind == 'finalise' then
    t.status = 'done'
    local member = d.job_id .. '/' .. tostring(d.round)
    redis.call('ZREM', KEYS[4], member)
    redis.call('ZREM', KEYS[5], member)
  end
else
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(d))
end
redis.call('SET', tkey, cjson.encode(t))
return cjson.encode(d)
"""

_PREEMPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local d = cjson.decode(raw)
if d.preempt then return 0 end
d.preempt = true
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(d))
return 1
"""

_RENEW = """
local n = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local d = cjson.decode(all[i + 1])
  if d.owner == ARGV[1] then
    d.lease_until = tonumber(ARGV[2])
    redis.call('HSET', KEYS[1], all[i], cjson.encode(d))
    redis.call('ZADD', KEYS[2], ARGV[2], all[i])
    n = n + 1
  end
end
return n
"""

_RECLAIM = """
local out = {}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[2])
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local d = cjson.decode(raw)
    if d.owner ~= ARGV[1] then
      d.owner = ARGV[1]
      d.lease_until = tonumber(ARGV[3])
      local enc = cjson.encode(d)
      redis.call('HSET', KEYS[1], id, enc)
      redis.call('ZADD', KEYS[2], ARGV[3], id)
      table.insert(out, enc)
    end
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
"""

_LIST_FIELDS = ("first", "count", "ready_at", "parts_done")
T = TypeVar("T")


def _lists(data: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """cjson writes an empty array as ``{}``; turn those back into lists."""
    for f in fields:
        if isinstance(data.get(f), dict):
            data[f] = []
    return data


def _task(raw: str | bytes) -> TaskRecord:
    data = _lists(json.loads(raw), ("resume",))
    data["resume"] = [list(map(int, r)) for r in data["resume"]]
    return TaskRecord(**data)


def _decision(raw: str | bytes) -> Decision:
    return Decision(**_lists(json.loads(raw), _LIST_FIELDS))


def _redis_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(f"scheduler state unavailable: {exc}") from exc
    return wrapper


class RedisState:
    """:class:`~fedfaas.jit.state.SchedulerState` in Redis (see the module docstring).

    Parameters
    ----------
    client
        A ``redis.Redis`` client; give it a ``socket_timeout``.
    namespace
        Prefix of every key, so several schedulers (or tests) share one Redis.
    """

    def __init__(self, client: redis.Redis, namespace: str = keys.JIT_NAMESPACE) -> None:
        if not namespace or any(c in namespace for c in " \n{}"):
            raise BadRequest(f"invalid namespace {namespace!r}")
        self.r = client
        self.ns = namespace
        self._create = client.register_script(_CREATE)
        self._arrive = client.register_script(_ARRIVE)
        self._fire = client.register_script(_FIRE)
        self._close = client.register_script(_CLOSE)
        self._commit = client.register_script(_COMMIT)
        self._complete = client.register_script(_COMPLETE)
        self._preempt = client.register_script(_PREEMPT)
        self._renew = client.register_script(_RENEW)
        self._reclaim = client.register_script(_RECLAIM)

    @_redis_errors
    def new_id(self) -> str:
        return f"d{self.r.incr(keys.jit_decision_seq(self.ns))}"

    @_redis_errors
    def create_task(self, task: TaskRecord) -> bool:
        timer = "" if task.timer_at is None else repr(task.timer_at)
        return bool(self._create(
            keys=[keys.jit_task(self.ns, task.key), keys.jit_active(self.ns), keys.jit_timers(self.ns)],
            args=[task.to_json(), repr(task.priority), timer, task.key]))

    @_redis_errors
    def get_task(self, key: str) -> TaskRecord | None:
        raw = self.r.get(keys.jit_task(self.ns, key))
        return None if raw is None else _task(raw)

    @_redis_errors
    def active_tasks(self, limit: int) -> list[TaskRecord]:
        tasks = [k.decode() for k in self.r.zrange(keys.jit_active(self.ns), 0, limit - 1)]  # type: ignore[union-attr]
        if not tasks:
            return []
        raws = self.r.mget([keys.jit_task(self.ns, k) for k in tasks])
        return [_task(raw) for raw in raws if raw is not None]

    @_redis_errors
    def record_arrivals(self, key: str, times: np.ndarray,
                        update_ids: Sequence[str] | None) -> tuple[int, TaskRecord]:
        t = [repr(float(x)) for x in np.asarray(times, dtype=np.float64)]
        ids = [] if update_ids is None else [str(i) for i in update_ids]
        n, raw = self._arrive(
            keys=[keys.jit_task(self.ns, key), keys.jit_arrival_times(self.ns, key),
                  keys.jit_update_ids(self.ns, key)],
            args=[len(t), *t, "1" if update_ids is not None else "0", *ids])
        if int(n) < 0:
            raise Conflict(f"no aggregation task {key!r}")
        return int(n), _task(raw)

    @_redis_errors
    def arrival_times(self, key: str, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros(0)
        raw = self.r.lrange(keys.jit_arrival_times(self.ns, key), start, stop - 1)
        return np.array([float(x) for x in raw], dtype=np.float64)

    @_redis_errors
    def update_ids(self, key: str, start: int, stop: int) -> list[str] | None:
        if stop <= start:
            return []
        raw = self.r.lrange(keys.jit_update_ids(self.ns, key), start, stop - 1)
        ids = [x.decode() for x in raw]  # type: ignore[union-attr]
        return ids if len(ids) == stop - start else None

    @_redis_errors
    def due_timers(self, now: float) -> list[str]:
        return [k.decode() for k in self.r.zrangebyscore(keys.jit_timers(self.ns), "-inf", now)]  # type: ignore[union-attr]

    @_redis_errors
    def fire_timer(self, key: str) -> bool:
        return bool(self._fire(keys=[keys.jit_task(self.ns, key), keys.jit_timers(self.ns)], args=[key]))

    @_redis_errors
    def close_task(self, key: str, closed_at: float, status: str) -> bool:
        return bool(self._close(
            keys=[keys.jit_task(self.ns, key), keys.jit_timers(self.ns), keys.jit_active(self.ns)],
            args=[repr(float(closed_at)), status, key]))

    @_redis_errors
    def commit(self, key: str, expected_epoch: int, advance_to: int,
               decisions: Sequence[Decision], capacity: int | None,
               resume: list[list[int]] | None, status: str | None) -> bool:
        args: list[Any] = [expected_epoch, advance_to,
                           sum(d.n_invocations for d in decisions),
                           -1 if capacity is None else capacity,
                           "" if resume is None else json.dumps(resume), status or "",
                           len(decisions)]
        for d in decisions:
            args += [d.decision_id, d.to_json(), repr(d.lease_until)]
        return bool(self._commit(
            keys=[keys.jit_task(self.ns, key), keys.jit_running(self.ns),
                  keys.jit_inflight(self.ns), keys.jit_leases(self.ns)], args=args))

    @_redis_errors
    def running_total(self) -> int:
        return int(self.r.get(keys.jit_running(self.ns)) or 0)

    @_redis_errors
    def inflight(self) -> list[Decision]:
        return [_decision(raw) for raw in self.r.hvals(keys.jit_inflight(self.ns))]

    @_redis_errors
    def request_preempt(self, decision_id: str) -> bool:
        return bool(self._preempt(keys=[keys.jit_inflight(self.ns)], args=[decision_id]))

    @_redis_errors
    def renew(self, owner: str, lease_until: float) -> int:
        return int(self._renew(keys=[keys.jit_inflight(self.ns), keys.jit_leases(self.ns)],
                               args=[owner, repr(lease_until)]))

    @_redis_errors
    def reclaim(self, owner: str, now: float, lease_until: float) -> list[Decision]:
        raws = self._reclaim(keys=[keys.jit_inflight(self.ns), keys.jit_leases(self.ns)],
                             args=[owner, repr(now), repr(lease_until)])
        return [_decision(raw) for raw in raws]

    @_redis_errors
    def complete(self, decision_id: str, part: int | None, n_fused: int | None) -> Decision | None:
        try:
            raw = self._complete(
                keys=[keys.jit_inflight(self.ns), keys.jit_leases(self.ns),
                      keys.jit_running(self.ns), keys.jit_active(self.ns), keys.jit_timers(self.ns)],
                # The script appends ``job/round`` to the task keys' prefix.
                args=[decision_id, -1 if part is None else part,
                      -1 if n_fused is None else max(0, n_fused), keys.jit_task(self.ns, "")])
        except redis.ResponseError as exc:
            if "no such part" in str(exc):
                raise Conflict(f"decision {decision_id} has no part {part}") from None
            raise
        return None if raw is None else _decision(raw)
