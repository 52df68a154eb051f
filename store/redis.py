"""Sessions, event logs, images and the webhook outbox in one Redis, shared by many instances.

The keys are laid out as store/redis_keys.py says. Every write is one call of one Lua script (each
operation is a branch of it), so each write is atomic: it checks that its session exists (and, for
a session whose run lease this instance holds, that the lease is still its own: the fence) before it
changes anything, and then makes all its changes or none.

Writes go through one writer task per store, in the order they were made: whatever is queued when
the writer is free (at most 500 writes) is sent as one MULTI/EXEC, so many sessions' events cost one
round trip, and a write made after another is applied after it. A failing write in a batch fails
alone; the others are kept (Redis has no rollback, so each branch of the script validates first and
only then writes).

Durability is Redis's: with `appendonly yes` and `appendfsync always` a write the service was told
is committed survives a crash of Redis; with the defaults (`everysec`, or RDB snapshots only) the
last second (or more) can be lost. See README "Durability".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio as aioredis
import ujson
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)

from core.errors import PendingLimitReached, RunTakenOver, SessionNotFound, StoreUnavailable
from core.events import Event, dumps
from core.models import Session, SessionStatus
from core.store import FINISHED, UNFINISHED, Admission, Delivery, FleetQueue, SessionStore, StoredImage
from store.records import session_from_row, session_to_row
from store.redis_keys import DEFAULT_PREFIX, Keys, event_id

log = logging.getLogger("orchestrator.store")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MIN_VERSION = (7, 0)  # Lua's redis.call with the 7.0 commands, XRANGE with exclusive ranges
BATCH = 500  # writes sent in one MULTI/EXEC at most
PRUNE_CHUNK = 200  # sessions one call of the prune script deletes at most (it blocks Redis meanwhile)
PROBE_TTL_MS = 60_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# -- the script --------------------------------------------------------------------------------------
# ARGV[1] names the operation, ARGV[2] is the key prefix; KEYS is empty: the keys are made here from
# the prefix exactly as store/redis_keys.py lays them out (so the store needs one Redis, not a
# cluster). Errors the store maps: GONE (the session does not exist: SessionNotFound), TAKEN (the
# lease is no longer this instance's: RunTakenOver), EXISTS and ORDER (StoreUnavailable).

_LUA_CONSTANTS = "\n".join(
    [
        "local FINISHED = {" + ", ".join(f"['{s.value}'] = true" for s in FINISHED) + "}",
        "local STATUSES = {" + ", ".join(f"'{s.value}'" for s in SessionStatus) + "}",
        "local UNFINISHED = {" + ", ".join(f"'{s.value}'" for s in UNFINISHED) + "}",
        "local FINISHED_LIST = {" + ", ".join(f"'{s.value}'" for s in FINISHED) + "}",
        "local ORPHAN_STATUSES = {'running', 'interrupted'}",
    ]
)

_LUA_BODY = r"""
local op, p = ARGV[1], ARGV[2]

local function session_key(id) return p .. 'session:' .. id end
local function events_key(id) return p .. 'events:' .. id end
local function status_key(status) return p .. 'status:' .. status end
local function owner_key(owner) return p .. 'owner:' .. owner end
local function lease_key(id) return p .. 'lease:' .. id end
local SESSIONS = p .. 'sessions'
local RUNNING = p .. 'running'
local QUEUE = p .. 'queue'
local RETAIN_FINISHED = p .. 'retention:finished'
local RETAIN_PENDING = p .. 'retention:pending'
local DUE = p .. 'deliveries:due'

local function count(owner, status, by)
  local key = p .. 'owner-count:' .. owner
  if redis.call('HINCRBY', key, status, by) <= 0 then redis.call('HDEL', key, status) end
end

-- Why a write of this session may not happen: it is gone, or its run lease is not ours. A write
-- without a fence (by an instance that does not run the session) is refused while anyone holds the
-- lease: the session's state and event ids are the runner's alone.
local function refused(id, fence)
  if redis.call('EXISTS', session_key(id)) == 0 then
    return redis.error_reply('GONE session ' .. id .. ' does not exist')
  end
  local holder = redis.call('GET', lease_key(id))
  if holder and fence == '' then
    return redis.error_reply('TAKEN session ' .. id .. ' is run by ' .. holder)
  end
  if fence ~= '' and holder ~= fence then
    return redis.error_reply('TAKEN the run lease of session ' .. id .. ' is held by ' ..
      (holder or 'nobody') .. ', not ' .. fence)
  end
  return nil
end

-- Now, in milliseconds, by Redis's clock (every instance's lease is timed by the same clock).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- How many sessions run across every instance: the leases that have not expired ({p}running keeps
-- each lease's expiry beside it, so they are counted without a scan).
local function live_runs()
  redis.call('ZREMRANGEBYSCORE', RUNNING, '-inf', now_ms())
  return redis.call('ZCARD', RUNNING)
end

-- Take the run lease of a session for `instance`, or extend it if it is already its own; the lease's
-- fencing token, or 0 if another instance holds it.
local function claim(id, instance, ms)
  local key = lease_key(id)
  local holder = redis.call('GET', key)
  local token
  if not holder then
    token = redis.call('INCR', p .. 'fence')
    redis.call('SET', key, instance .. ':' .. token, 'PX', ms)
  else
    local who, held = string.match(holder, '^(.*):(%d+)$')
    if who ~= instance then return 0 end
    token = tonumber(held)
    redis.call('PEXPIRE', key, ms)
  end
  redis.call('ZADD', RUNNING, now_ms() + ms, id)
  return token
end

-- Store a session's row and keep every index of it; a new one gets the next creation number.
local function put(id, row, status, owner, created, updated)
  local key = session_key(id)
  local old = redis.call('HMGET', key, 'status', 'owner', 'seq')
  local seq = old[3]
  if not seq then
    seq = redis.call('INCR', p .. 'seq')
    redis.call('ZADD', SESSIONS, seq, id)
  end
  if old[1] ~= status then
    if old[1] then redis.call('ZREM', status_key(old[1]), id) end
    redis.call('ZADD', status_key(status), seq, id)
  end
  if old[2] ~= owner then
    if old[2] then redis.call('ZREM', owner_key(old[2]), id) end
    redis.call('ZADD', owner_key(owner), seq, id)
  end
  if old[1] ~= status or old[2] ~= owner then
    if old[1] then count(old[2], old[1], -1) end
    count(owner, status, 1)
  end
  if FINISHED[status] then
    redis.call('ZADD', RETAIN_FINISHED, updated, id)
  else
    redis.call('ZREM', RETAIN_FINISHED, id)
  end
  if status == 'pending' then
    redis.call('ZADD', RETAIN_PENDING, created, id)
  else
    redis.call('ZREM', RETAIN_PENDING, id)
  end
  -- Started, cancelled or ended: it waits no more (a pending one may be on its way into the queue).
  if status ~= 'queued' and status ~= 'pending' then redis.call('ZREM', QUEUE, id) end
  redis.call('HSET', key, 'row', row, 'status', status, 'owner', owner, 'seq', seq,
    'created', created, 'updated', updated)
end

-- Remove a session with everything it has; 1 if it existed.
local function remove(id)
  local key = session_key(id)
  local old = redis.call('HMGET', key, 'status', 'owner')
  if old[1] then
    redis.call('ZREM', SESSIONS, id)
    redis.call('ZREM', status_key(old[1]), id)
    redis.call('ZREM', owner_key(old[2]), id)
    count(old[2], old[1], -1)
    redis.call('ZREM', RETAIN_FINISHED, id)
    redis.call('ZREM', RETAIN_PENDING, id)
  end
  redis.call('ZREM', QUEUE, id)
  redis.call('ZREM', RUNNING, id)
  local mine = p .. 'deliveries:' .. id
  for _, message in ipairs(redis.call('ZRANGE', mine, 0, -1)) do
    redis.call('DEL', p .. 'delivery:' .. message)
    redis.call('ZREM', DUE, message)
  end
  -- UNLINK: a long event log is freed off Redis's main thread.
  redis.call('UNLINK', key, events_key(id), p .. 'images:' .. id, lease_key(id), mine)
  if old[1] then return 1 end
  return 0
end

local function add_delivery(a)
  local message, sid = ARGV[a], ARGV[a + 1]
  local mine = p .. 'deliveries:' .. sid
  local n = redis.call('ZCARD', mine) + 1
  redis.call('HSET', p .. 'delivery:' .. message, 'id', message, 'session_id', sid,
    'event_type', ARGV[a + 2], 'url', ARGV[a + 3], 'payload', ARGV[a + 4], 'created_at', ARGV[a + 5],
    'next_attempt_at', ARGV[a + 6], 'attempts', ARGV[a + 7], 'status', ARGV[a + 8],
    'last_error', ARGV[a + 9], 'delivered_at', ARGV[a + 10], 'n', n)
  redis.call('ZADD', mine, ARGV[a + 5], message)
  if ARGV[a + 8] == 'pending' then redis.call('ZADD', DUE, ARGV[a + 6], message) end
end

local function last_event(id)
  local top = redis.call('XREVRANGE', events_key(id), '+', '-', 'COUNT', 1)
  if top[1] then return top[1][1] end
  return ''
end

-- The rows and last event ids of sessions, flat: row, last entry id, row, last entry id, ...
local function rows(ids)
  local out = {}
  for _, id in ipairs(ids) do
    out[#out + 1] = redis.call('HGET', session_key(id), 'row')
    out[#out + 1] = last_event(id)
  end
  return out
end

-- The first `n` members of several zsets scored by creation number, merged oldest first.
local function oldest(keys, n)
  local all = {}
  for _, key in ipairs(keys) do
    local flat = redis.call('ZRANGE', key, 0, n - 1, 'WITHSCORES')
    for j = 1, #flat, 2 do all[#all + 1] = {tonumber(flat[j + 1]), flat[j]} end
  end
  table.sort(all, function(x, y) return x[1] < y[1] end)
  local ids = {}
  for j = 1, math.min(n, #all) do ids[j] = all[j][2] end
  return ids
end

local function by_seq(ids)
  local seqs = {}
  for _, id in ipairs(ids) do seqs[id] = tonumber(redis.call('ZSCORE', SESSIONS, id)) or 0 end
  table.sort(ids, function(x, y) return seqs[x] < seqs[y] end)
  return ids
end

if op == 'create' then
  local id, row = ARGV[3], ARGV[4]
  if redis.call('EXISTS', session_key(id)) == 1 then
    -- The same row again is this write retried after its answer was lost; anything else is a clash.
    if redis.call('HGET', session_key(id), 'row') == row then return 2 end
    return redis.error_reply('EXISTS session ' .. id .. ' exists already')
  end
  -- ARGV[9]: the most pending sessions the owner may hold ('' for no limit), counted here, in the
  -- step that stores the new one, so creates made at once cannot pass it together.
  if ARGV[9] ~= '' then
    local pending = tonumber(redis.call('HGET', p .. 'owner-count:' .. ARGV[6], 'pending') or '0')
    if pending >= tonumber(ARGV[9]) then return redis.error_reply('PENDING ' .. pending) end
  end
  put(id, row, ARGV[5], ARGV[6], ARGV[7], ARGV[8])
  return 1

elseif op == 'update' then
  local id = ARGV[3]
  local no = refused(id, ARGV[4])
  if no then return no end
  put(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
  return 1

elseif op == 'append' then
  -- ARGV: id, fence, n, n x (event id, type, payload), has session, [row, status, owner, created,
  -- updated], m, m x (the 11 fields of a delivery)
  local id = ARGV[3]
  local no = refused(id, ARGV[4])
  if no then return no end
  local n = tonumber(ARGV[5])
  local ek = events_key(id)
  local last = 0
  local top = last_event(id)
  if top ~= '' then last = tonumber(string.match(top, '^%d+')) end
  if n > 0 and tonumber(ARGV[6]) <= last then
    -- Already in the log byte for byte: this write retried after its answer was lost.
    for j = 0, n - 1 do
      local a = 6 + 3 * j
      local entry = redis.call('XRANGE', ek, ARGV[a] .. '-1', ARGV[a] .. '-1')
      if not entry[1] or entry[1][2][2] ~= ARGV[a + 1] or entry[1][2][4] ~= ARGV[a + 2] then
        return redis.error_reply('ORDER event ' .. ARGV[6] .. ' of session ' .. id ..
          ' is not after the last one in its log, ' .. top)
      end
    end
    return 2
  end
  local previous = last
  for j = 0, n - 1 do
    local this = tonumber(ARGV[6 + 3 * j])
    if this <= previous then
      return redis.error_reply('ORDER event ' .. ARGV[6 + 3 * j] .. ' of session ' .. id ..
        ' is not after event ' .. previous)
    end
    previous = this
  end
  local s = 6 + 3 * n
  local with_session = ARGV[s] == '1'
  local d = s + 1
  if with_session then d = s + 6 end
  local m = tonumber(ARGV[d])
  for j = 0, m - 1 do
    local message = ARGV[d + 1 + 11 * j]
    if redis.call('EXISTS', p .. 'delivery:' .. message) == 1 then
      return redis.error_reply('EXISTS webhook message ' .. message .. ' exists already')
    end
  end
  for j = 0, n - 1 do
    local a = 6 + 3 * j
    redis.call('XADD', ek, ARGV[a] .. '-1', 'type', ARGV[a + 1], 'payload', ARGV[a + 2])
  end
  if with_session then put(id, ARGV[s + 1], ARGV[s + 2], ARGV[s + 3], ARGV[s + 4], ARGV[s + 5]) end
  for j = 0, m - 1 do add_delivery(d + 1 + 11 * j) end
  return 1

elseif op == 'image' then
  local id = ARGV[3]
  local no = refused(id, ARGV[4])
  if no then return no end
  redis.call('HSET', p .. 'images:' .. id, ARGV[5] .. ':type', ARGV[6], ARGV[5] .. ':data', ARGV[7])
  return 1

elseif op == 'delete' then
  return remove(ARGV[3])

elseif op == 'record' then
  -- A delivery's state after an attempt; nothing if it went with its session meanwhile.
  local message = ARGV[3]
  local key = p .. 'delivery:' .. message
  if redis.call('EXISTS', key) == 0 then return 0 end
  redis.call('HSET', key, 'attempts', ARGV[4], 'next_attempt_at', ARGV[5], 'status', ARGV[6],
    'last_error', ARGV[7], 'delivered_at', ARGV[8])
  if ARGV[6] == 'pending' then
    redis.call('ZADD', DUE, ARGV[5], message)
  else
    redis.call('ZREM', DUE, message)
  end
  return 1

elseif op == 'prune' then
  -- One chunk of the retention sweep: the finished sessions updated before the cutoff, then (with a
  -- pending cutoff) the pending ones created before it; once none is left, the oldest finished and
  -- then pending ones beyond `keep`. Returns {more (0/1), id, id, ...}; the caller calls again
  -- while `more`.
  local finished_before, keep, pending_before = ARGV[3], tonumber(ARGV[4]), ARGV[5]
  local chunk = tonumber(ARGV[6])
  local doomed = by_seq(redis.call('ZRANGEBYSCORE', RETAIN_FINISHED, '-inf', '(' .. finished_before,
    'LIMIT', 0, chunk))
  local timed = redis.call('ZCOUNT', RETAIN_FINISHED, '-inf', '(' .. finished_before)
  if pending_before ~= '' then
    timed = timed + redis.call('ZCOUNT', RETAIN_PENDING, '-inf', '(' .. pending_before)
    if #doomed < chunk then
      local pending = by_seq(redis.call('ZRANGEBYSCORE', RETAIN_PENDING, '-inf', '(' .. pending_before,
        'LIMIT', 0, chunk - #doomed))
      for _, id in ipairs(pending) do doomed[#doomed + 1] = id end
    end
  end
  local more = 0
  if timed > #doomed then
    more = 1
  else
    local excess = redis.call('ZCARD', SESSIONS) - timed - keep
    local want = math.min(excess, chunk - #doomed)
    if want > 0 then
      local taken = {}
      for _, id in ipairs(doomed) do taken[id] = true end
      local groups = {FINISHED_LIST}
      if pending_before ~= '' then groups[2] = {'pending'} end
      local picked = 0
      for _, group in ipairs(groups) do
        local keys = {}
        for j, status in ipairs(group) do keys[j] = status_key(status) end
        for _, id in ipairs(oldest(keys, want + #doomed)) do
          if picked < want and not taken[id] then
            taken[id] = true
            doomed[#doomed + 1] = id
            picked = picked + 1
          end
        end
      end
      if picked == want and excess > want then more = 1 end
    end
  end
  local out = {more}
  for _, id in ipairs(doomed) do
    remove(id)
    out[#out + 1] = id
  end
  return out

elseif op == 'claim' then
  return claim(ARGV[3], ARGV[4], tonumber(ARGV[5]))

elseif op == 'admit' then
  -- ARGV: id, instance, ms, max running (0: no limit), max queued. Start a pending session under the
  -- fleet's max_running: {'run', token, running, queued} with its lease taken; {'queued', position,
  -- running, queued} once it joined the queue (its caller then records it queued); {'full', 0,
  -- running, queued}; {'started', 0, 0, 0} if it is not pending any more; {'taken', ...} if another
  -- instance holds its lease. First come, first served: while anyone waits, a newcomer waits too.
  local id, max_running, max_queued = ARGV[3], tonumber(ARGV[6]), tonumber(ARGV[7])
  local status = redis.call('HGET', session_key(id), 'status')
  if not status then return redis.error_reply('GONE session ' .. id .. ' does not exist') end
  if status ~= 'pending' then return {'started', 0, 0, 0} end
  local running, queued = live_runs(), redis.call('ZCARD', QUEUE)
  if queued == 0 and (max_running == 0 or running < max_running) then
    local token = claim(id, ARGV[4], tonumber(ARGV[5]))
    if token == 0 then return {'taken', 0, running, queued} end
    return {'run', token, running + 1, queued}
  end
  if redis.call('ZSCORE', QUEUE, id) == false then
    if queued >= max_queued then return {'full', 0, running, queued} end
    redis.call('ZADD', QUEUE, redis.call('INCR', p .. 'queue-seq'), id)
    queued = queued + 1
  end
  return {'queued', redis.call('ZRANK', QUEUE, id) + 1, running, queued}

elseif op == 'next' then
  -- ARGV: instance, ms, max running. If a run slot is free in the fleet, the first queued session,
  -- out of the queue with its lease taken for `instance`: {id, token}; else nil. An entry whose
  -- session is still pending (its `queued` record is on its way) is passed over; one that started,
  -- ended or went is dropped.
  local max_running = tonumber(ARGV[5])
  if max_running > 0 and live_runs() >= max_running then return false end
  for _, id in ipairs(redis.call('ZRANGE', QUEUE, 0, 99)) do
    local status = redis.call('HGET', session_key(id), 'status')
    if status == 'queued' then
      if redis.call('EXISTS', lease_key(id)) == 0 then
        redis.call('ZREM', QUEUE, id)
        return {id, claim(id, ARGV[3], tonumber(ARGV[4]))}
      end
    elseif status ~= 'pending' then
      redis.call('ZREM', QUEUE, id)
    end
  end
  return false

elseif op == 'queue' then
  -- The fleet's run slots taken and the sessions queued for one, oldest first: {running, id, ...}.
  local out = {live_runs()}
  for _, id in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
    if redis.call('HGET', session_key(id), 'status') == 'queued' then out[#out + 1] = id end
  end
  return out

elseif op == 'renew' then
  -- ARGV: ms, then (session id, lease value) pairs; 1 for each renewed, 0 for each lost.
  local out = {}
  local expiry = now_ms() + tonumber(ARGV[3])
  for j = 4, #ARGV, 2 do
    local key = lease_key(ARGV[j])
    if redis.call('GET', key) == ARGV[j + 1] then
      redis.call('PEXPIRE', key, ARGV[3])
      redis.call('ZADD', RUNNING, expiry, ARGV[j])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
  end
  return out

elseif op == 'release' then
  local key = lease_key(ARGV[3])
  if redis.call('GET', key) == ARGV[4] then
    redis.call('ZREM', RUNNING, ARGV[3])
    return redis.call('DEL', key)
  end
  return 0

elseif op == 'orphans' then
  -- A queued session out of the queue with no lease was taken from it by an instance that died (or
  -- failed) before it could start the run: it goes back to the front of the queue.
  for _, id in ipairs(redis.call('ZRANGE', status_key('queued'), 0, -1)) do
    if redis.call('ZSCORE', QUEUE, id) == false and redis.call('EXISTS', lease_key(id)) == 0 then
      redis.call('ZADD', QUEUE, 0, id)
    end
  end
  local all = {}
  for _, status in ipairs(ORPHAN_STATUSES) do
    local flat = redis.call('ZRANGE', status_key(status), 0, -1, 'WITHSCORES')
    for j = 1, #flat, 2 do
      if redis.call('EXISTS', lease_key(flat[j])) == 0 then
        all[#all + 1] = {tonumber(flat[j + 1]), flat[j]}
      end
    end
  end
  table.sort(all, function(x, y) return x[1] < y[1] end)
  local ids = {}
  for j, pair in ipairs(all) do ids[j] = pair[2] end
  return ids

elseif op == 'rows' then
  local ids = {}
  for j = 3, #ARGV do ids[#ids + 1] = ARGV[j] end
  return rows(ids)

elseif op == 'newest' then
  -- ARGV: limit, status ('' for any), has before, before, has owner, owner
  local limit, status = tonumber(ARGV[3]), ARGV[4]
  local base, field, wanted = SESSIONS, nil, nil
  if ARGV[7] == '1' and status ~= '' then
    -- Walk the smaller index; check the other field of each session.
    local by_owner, by_status = owner_key(ARGV[8]), status_key(status)
    if redis.call('ZCARD', by_owner) <= redis.call('ZCARD', by_status) then
      base, field, wanted = by_owner, 'status', status
    else
      base, field, wanted = by_status, 'owner', ARGV[8]
    end
  elseif ARGV[7] == '1' then
    base = owner_key(ARGV[8])
  elseif status ~= '' then
    base = status_key(status)
  end
  local max = '+inf'
  if ARGV[5] == '1' then
    local seq = redis.call('HGET', session_key(ARGV[6]), 'seq')
    if not seq then return {} end
    max = '(' .. seq
  end
  local found = {}
  while #found < limit do
    local page = redis.call('ZREVRANGEBYSCORE', base, max, '-inf', 'WITHSCORES', 'LIMIT', 0, 100)
    if #page == 0 then break end
    for j = 1, #page, 2 do
      local id = page[j]
      if not field or redis.call('HGET', session_key(id), field) == wanted then
        found[#found + 1] = id
        if #found == limit then break end
      end
    end
    max = '(' .. page[#page]
  end
  return rows(found)

elseif op == 'unfinished' then
  local keys = {}
  for j, status in ipairs(UNFINISHED) do keys[j] = status_key(status) end
  local total = 0
  for _, key in ipairs(keys) do total = total + redis.call('ZCARD', key) end
  if total == 0 then return {} end
  return rows(oldest(keys, total))

elseif op == 'count' then
  if ARGV[3] == '1' then return redis.call('HGETALL', p .. 'owner-count:' .. ARGV[4]) end
  local out = {}
  for _, status in ipairs(STATUSES) do
    local n = redis.call('ZCARD', status_key(status))
    if n > 0 then
      out[#out + 1] = status
      out[#out + 1] = n
    end
  end
  return out

elseif op == 'due' then
  local out = {}
  for _, message in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])) do
    out[#out + 1] = redis.call('HGETALL', p .. 'delivery:' .. message)
  end
  return out

elseif op == 'deliveries' then
  local out = {}
  for _, message in ipairs(redis.call('ZRANGE', p .. 'deliveries:' .. ARGV[3], 0, -1)) do
    out[#out + 1] = redis.call('HGETALL', p .. 'delivery:' .. message)
  end
  return out
end

return redis.error_reply('ERR unknown operation ' .. tostring(op))
"""

SCRIPT = (_LUA_CONSTANTS + "\n" + _LUA_BODY).encode()
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest()


# -- helpers -------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL as it may be shown: a password (in the user part or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if has_password else ''}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    shown = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in query], safe="*")
    # Not urlunsplit: it would write unix:///path as unix:/path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{shown}" if shown else "")


def default_instance() -> str:
    """This process's name among the instances sharing the store: host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, cut as the stored row cuts them (store.records keeps ms)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _pairs(flat: Sequence[Any]) -> dict[bytes, bytes]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _delivery_args(d: Delivery) -> list[Any]:
    return [
        d.id,
        d.session_id,
        d.event_type,
        d.url,
        d.payload,
        repr(float(d.created_at)),
        repr(float(d.next_attempt_at)),
        d.attempts,
        d.status,
        d.last_error,
        "" if d.delivered_at is None else repr(float(d.delivered_at)),
    ]


def _delivery(flat: Sequence[Any]) -> tuple[Delivery, int]:
    """A delivery from its hash, with its position among its session's deliveries."""
    f = _pairs(flat)
    delivered = f[b"delivered_at"]
    return (
        Delivery(
            id=f[b"id"].decode(),
            session_id=f[b"session_id"].decode(),
            event_type=f[b"event_type"].decode(),
            url=f[b"url"].decode(),
            payload=bytes(f[b"payload"]),
            created_at=float(f[b"created_at"]),
            next_attempt_at=float(f[b"next_attempt_at"]),
            attempts=int(f[b"attempts"]),
            status=f[b"status"].decode(),
            last_error=f[b"last_error"].decode(),
            delivered_at=float(delivered) if delivered else None,
        ),
        int(f.get(b"n", 0)),
    )


def _session_args(session: Session) -> list[Any]:
    """What `put` in the script takes: row, status, owner, created, updated. The row is taken now."""
    return [
        dumps(list(session_to_row(session))),
        session.status.value,
        session.owner,
        epoch_ms(session.created_at),
        epoch_ms(session.updated_at),
    ]


def _why(exc: BaseException) -> str:
    if isinstance(exc, ReadOnlyError):
        return f"it is a read-only replica ({exc})"
    if isinstance(exc, OutOfMemoryError):
        return f"it is out of memory: used memory is over maxmemory ({exc})"
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ResponseError) else f"{type(exc).__name__}: {text}"


@dataclass(slots=True)
class _Write:
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    parse: Callable[[Any], Any] | None
    session_id: str | None


class RedisStore(SessionStore):
    """The SessionStore on Redis (see the module's docstring); open it with `RedisStore.open`.

    `redis` (the client) and `keys` (the layout) are there for the event log's stream readers.
    """

    kind = "redis"
    shared = True  # other instances use the same Redis: a session may run elsewhere

    def __init__(
        self,
        client: aioredis.Redis,
        shown_url: str,
        keys: Keys,
        instance: str,
        lease_time: float,
    ) -> None:
        self.redis = client
        self.url = shown_url  # never with its password
        self.keys = keys
        self.instance = instance
        self.lease_ms = max(1, round(lease_time * 1000))
        self.commits = 0  # batches Redis answered
        self.last_error: str | None = None
        self._queue: collections.deque[_Write] = collections.deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        # The run leases this instance holds: session id -> "{instance}:{token}", the fence.
        self._leases: dict[str, str] = {}

    # -- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        instance: str | None = None,
        lease_time: float = 10.0,
        max_connections: int = 64,
        timeout: float = 5.0,
    ) -> RedisStore:
        """Connect, check the server (PING, version) and load the script; StoreUnavailable naming the
        URL (without its password) if Redis cannot be reached or used."""
        shown = redact_url(url)
        # CLIENT SETNAME takes printable ASCII without spaces only.
        name = re.sub(r"[^!-~]", "_", instance or default_instance())
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout,  # waiting for a free connection of the pool
                socket_connect_timeout=min(timeout, 2.0),
                socket_timeout=timeout,
                # A dropped connection is made again, a few times, waiting longer each time.
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
                client_name=f"orchestrator:{name}",
            )
        except (ValueError, TypeError):
            raise StoreUnavailable(
                f"redis_url {shown} is not a Redis URL (redis://, rediss:// or unix://)"
            ) from None
        client = aioredis.Redis(connection_pool=pool)
        store = cls(client, shown, Keys(prefix), instance or default_instance(), lease_time)
        try:
            await client.execute_command("PING")
            info = await client.execute_command("INFO", "server")
            version = str(info.get("redis_version", "0"))
            if tuple(int(n) for n in re.findall(r"\d+", version)[:2]) < MIN_VERSION:
                raise StoreUnavailable(
                    f"Redis at {shown} is version {version}; the store needs "
                    f"{'.'.join(map(str, MIN_VERSION))} or later"
                )
            await store._load_script()
        except (RedisError, OSError) as exc:
            await client.aclose()
            await pool.disconnect()
            raise StoreUnavailable(f"cannot use Redis at {shown}: {_why(exc)}") from exc
        except BaseException:
            await client.aclose()
            await pool.disconnect()
            raise
        store._writer = asyncio.get_running_loop().create_task(store._write_loop(), name="redis-writer")
        return store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            try:
                # What is queued is written first; a Redis that is gone answers each batch with an error.
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=30)
            except TimeoutError:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
        self._fail_queued(StoreUnavailable(f"the store on Redis at {self.url} is closed"))
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()

    # -- plumbing ------------------------------------------------------------------------------

    async def _load_script(self) -> None:
        sha = await self.redis.execute_command("SCRIPT", "LOAD", SCRIPT)
        sha = sha.decode() if isinstance(sha, bytes) else sha
        if sha != SCRIPT_SHA:
            raise StoreUnavailable(f"Redis at {self.url} gave the script another SHA1 ({sha})")

    def _unavailable(self, doing: str, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"cannot {doing} Redis at {self.url}: {_why(exc)}")

    def _outcome(self, result: Any, write: _Write) -> tuple[bool, Any]:
        if isinstance(result, ResponseError):
            code, _, why = str(result).partition(" ")
            if code == "GONE":
                return False, SessionNotFound(write.session_id or "?")
            if code == "TAKEN":
                return False, RunTakenOver(f"session {write.session_id}: {why}")
            if code == "PENDING":
                return False, PendingLimitReached(int(why))
            if code in ("EXISTS", "ORDER"):
                return False, StoreUnavailable(f"refused by Redis at {self.url}: {why}")
            return False, self._unavailable("write to", result)
        if isinstance(result, Exception):
            return False, self._unavailable("write to", result)
        try:
            return True, write.parse(result) if write.parse else None
        except Exception as exc:  # a reply this code does not understand
            return False, StoreUnavailable(f"unexpected answer from Redis at {self.url}: {exc!r}")

    def _submit(
        self,
        *args: Any,
        session_id: str | None = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a write now (a call of the script with these arguments); the future completes once
        Redis has answered it, after every write queued before it."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(StoreUnavailable(f"the store on Redis at {self.url} is closed"))
            return future
        self._queue.append(_Write(args, future, parse, session_id))
        self._wake.set()
        return future

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                self._fail(batch, StoreUnavailable(f"the store on Redis at {self.url} was closed"))
                raise
            except Exception as exc:  # the writer must outlive anything one batch does
                log.exception("Redis writer: a batch of %d writes failed unexpectedly", len(batch))
                self._fail(batch, self._unavailable("write to", exc))

    async def _commit(self, batch: list[_Write]) -> None:
        try:
            results = await self._execute(batch)
        except (RedisError, OSError) as exc:
            log.error("Redis write of %d writes failed: %s", len(batch), _why(exc))
            self.last_error = str(exc)
            self._fail(batch, self._unavailable("write to", exc))
            return
        self.commits += 1
        self.last_error = None
        for write, result in zip(batch, results, strict=True):
            if write.future.done():  # its caller gave up waiting
                continue
            ok, value = self._outcome(result, write)
            if ok:
                write.future.set_result(value)
            else:
                write.future.set_exception(value)

    async def _execute(self, batch: list[_Write]) -> list[Any]:
        for attempt in range(2):
            # One MULTI/EXEC: the script cache cannot change inside it, so after a restart of Redis
            # every write of the batch finds the script missing, or none does; then it is loaded and
            # the whole batch sent again, so no write overtakes another.
            async with self.redis.pipeline(transaction=len(batch) > 1) as pipe:
                for write in batch:
                    pipe.execute_command("EVALSHA", SCRIPT_SHA, 0, *write.args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 0 and all(isinstance(r, NoScriptError) for r in results):
                await self._load_script()
                continue
            return results
        raise AssertionError("unreachable")

    def _fail(self, batch: list[_Write], error: Exception) -> None:
        for write in batch:
            if not write.future.done():
                write.future.set_exception(error)

    def _fail_queued(self, error: Exception) -> None:
        batch = list(self._queue)
        self._queue.clear()
        self._fail(batch, error)

    async def _write(
        self, *args: Any, session_id: str | None = None, parse: Callable[[Any], Any] | None = None
    ) -> Any:
        return await self._submit(*args, session_id=session_id, parse=parse)

    async def _call(self, *args: Any, doing: str = "read from") -> Any:
        """Call the script at once, beside the writer (reads; the renewal of leases)."""
        try:
            try:
                return await self.redis.execute_command("EVALSHA", SCRIPT_SHA, 0, *args)
            except NoScriptError:
                await self._load_script()
                return await self.redis.execute_command("EVALSHA", SCRIPT_SHA, 0, *args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(doing, exc) from exc

    def _fence(self, session_id: str) -> str:
        """The lease value a write of this session must find, if this instance runs it; else ''."""
        return self._leases.get(session_id, "")

    @staticmethod
    def _sessions(flat: Sequence[Any]) -> list[Session]:
        sessions = []
        for j in range(0, len(flat), 2):
            row, last = flat[j], flat[j + 1]
            if row is not None:
                sessions.append(session_from_row(tuple(ujson.loads(row)), event_id(last) if last else 0))
        return sessions

    # -- sessions ------------------------------------------------------------------------------

    async def create(self, session: Session, max_pending: int | None = None) -> None:
        p = self.keys.prefix
        limit = "" if max_pending is None else str(max_pending)
        await self._write("create", p, session.id, *_session_args(session), limit, session_id=session.id)

    async def update(self, session: Session) -> None:
        args = _session_args(session)  # taken now: the session may change before the write runs
        fence = self._fence(session.id)
        await self._write("update", self.keys.prefix, session.id, fence, *args, session_id=session.id)

    async def get(self, session_id: str) -> Session | None:
        sessions = self._sessions(await self._call("rows", self.keys.prefix, session_id))
        return sessions[0] if sessions else None

    async def delete(self, session_id: str) -> bool:
        return bool(await self._write("delete", self.keys.prefix, session_id, parse=int))

    async def newest(
        self,
        limit: int,
        status: SessionStatus | None = None,
        before: str | None = None,
        owner: str | None = None,
    ) -> list[Session]:
        if limit <= 0:
            return []
        flat = await self._call(
            "newest",
            self.keys.prefix,
            limit,
            status.value if status is not None else "",
            "1" if before is not None else "0",
            before or "",
            "1" if owner is not None else "0",
            owner or "",
        )
        return self._sessions(flat)

    async def unfinished(self) -> list[Session]:
        return self._sessions(await self._call("unfinished", self.keys.prefix))

    async def count(self, owner: str | None = None) -> dict[str, int]:
        flat = await self._call("count", self.keys.prefix, "1" if owner is not None else "0", owner or "")
        return {k.decode(): int(v) for k, v in _pairs(flat).items() if int(v) > 0}

    # -- events and images ---------------------------------------------------------------------

    def append_events(
        self,
        session_id: str,
        events: Sequence[Event],
        session: Session | None = None,
        outbox: Sequence[Delivery] = (),
    ) -> asyncio.Future[None]:
        if session is not None and session.id != session_id:
            raise ValueError(f"the state of session {session.id} given with events of {session_id}")
        args: list[Any] = ["append", self.keys.prefix, session_id, self._fence(session_id), len(events)]
        for event in events:
            if event.id is None:
                raise ValueError(f"a {event.type} event without an id cannot be stored")
            args += (event.id, event.type, event.payload)
        if session is not None:
            args += ("1", *_session_args(session))  # taken now, as in update
        else:
            args.append("0")
        args.append(len(outbox))
        for delivery in outbox:
            args += _delivery_args(delivery)
        return self._submit(*args, session_id=session_id)

    async def events_after(self, session_id: str, after_id: int) -> list[Event]:
        if after_id >= 2**63:
            return []
        try:
            entries = await self.redis.execute_command(
                "XRANGE", self.keys.events(session_id), f"({max(after_id, 0)}-1", "+"
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable("read from", exc) from exc
        events = []
        for entry, fields in entries:
            values = fields if isinstance(fields, dict) else _pairs(fields)
            kind = values[b"type"].decode()
            events.append(Event.stored(event_id(entry), kind, session_id, bytes(values[b"payload"])))
        return events

    async def put_image(self, session_id: str, name: str, image: StoredImage) -> None:
        await self._write(
            "image",
            self.keys.prefix,
            session_id,
            self._fence(session_id),
            name,
            image.content_type,
            image.data,
            session_id=session_id,
        )

    async def get_image(self, session_id: str, name: str) -> StoredImage | None:
        try:
            content_type, data = await self.redis.execute_command(
                "HMGET", self.keys.images(session_id), f"{name}:type", f"{name}:data"
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable("read from", exc) from exc
        if content_type is None or data is None:
            return None
        return StoredImage(content_type.decode(), bytes(data))

    # -- upkeep --------------------------------------------------------------------------------

    async def prune(
        self, finished_before: datetime, keep_at_most: int, pending_before: datetime | None = None
    ) -> list[str]:
        deleted: list[str] = []
        pending = str(epoch_ms(pending_before)) if pending_before is not None else ""
        while True:
            more, *ids = await self._write(
                "prune",
                self.keys.prefix,
                epoch_ms(finished_before),
                max(keep_at_most, 0),
                pending,
                PRUNE_CHUNK,
                parse=list,
            )
            deleted += [i.decode() for i in ids]
            if not more or not ids:
                return deleted

    async def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        if limit <= 0:
            return []
        flat = await self._call("due", self.keys.prefix, repr(float(now)), limit)
        return [_delivery(d)[0] for d in flat]

    async def next_delivery_at(self) -> float | None:
        try:
            first = await self.redis.execute_command("ZRANGE", self.keys.deliveries_due, 0, 0, "WITHSCORES")
        except (RedisError, OSError) as exc:
            raise self._unavailable("read from", exc) from exc
        if not first:
            return None
        # [(member, score)] as redis-py pairs it, or the flat [member, score] Redis sends
        return float(first[0][1] if isinstance(first[0], list | tuple) else first[1])

    async def record_attempt(self, delivery: Delivery) -> None:
        await self._write(
            "record",
            self.keys.prefix,
            delivery.id,
            delivery.attempts,
            repr(float(delivery.next_attempt_at)),
            delivery.status,
            delivery.last_error,
            "" if delivery.delivered_at is None else repr(float(delivery.delivered_at)),
        )

    async def deliveries(self, session_id: str) -> list[Delivery]:
        flat = await self._call("deliveries", self.keys.prefix, session_id)
        ordered = sorted((_delivery(d) for d in flat), key=lambda pair: (pair[0].created_at, pair[1]))
        return [d for d, _ in ordered]

    async def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "kind": self.kind,
            "url": self.url,
            "prefix": self.keys.prefix,
            "instance": self.instance,
            "commits": self.commits,
            "pending_writes": len(self._queue),
            "leases": len(self._leases),
        }
        if self.last_error is not None:
            facts["last_error"] = self.last_error  # of the last batch that failed, until one succeeds
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.execute_command("SET", self.keys.probe(self.instance), b"1", "PX", PROBE_TTL_MS)
                pipe.execute_command("INFO", "server", "memory")
                probe, info = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            return {**facts, "writable": False, "error": f"cannot reach Redis at {self.url}: {_why(exc)}"}
        if isinstance(info, dict):
            facts.update(
                version=str(info.get("redis_version", "")),
                used_memory_bytes=info.get("used_memory"),
                maxmemory_bytes=info.get("maxmemory"),
            )
        if isinstance(probe, Exception):
            return {**facts, "writable": False, "error": str(self._unavailable("write to", probe))}
        # The probe is a write made now: a Redis back after an outage is writable again at once,
        # even if no write of the service has succeeded since (nothing may be sent its way until then).
        return {**facts, "writable": True}

    # -- run leases ----------------------------------------------------------------------------

    async def claim_run(self, session_id: str) -> bool:
        token = await self._write(
            "claim", self.keys.prefix, session_id, self.instance, self.lease_ms, parse=int
        )
        if not token:
            return False
        self._leases[session_id] = f"{self.instance}:{token}"
        return True

    async def renew_runs(self) -> list[str]:
        held = list(self._leases.items())
        if not held:
            return []
        flat = [part for pair in held for part in pair]
        renewed = await self._call("renew", self.keys.prefix, self.lease_ms, *flat, doing="renew leases on")
        lost = []
        for (session_id, value), ok in zip(held, renewed, strict=True):
            # Released or claimed again meanwhile: that is newer than this answer.
            if not ok and self._leases.get(session_id) == value:
                del self._leases[session_id]
                lost.append(session_id)
        if lost:
            log.warning("lost the run lease of %d sessions: %s", len(lost), ", ".join(lost))
        return lost

    async def release_run(self, session_id: str) -> None:
        value = self._leases.pop(session_id, None)
        if value is not None:
            # Queued behind this session's writes: the lease goes once they are in.
            await self._write("release", self.keys.prefix, session_id, value)

    async def orphaned_runs(self) -> list[str]:
        return [i.decode() for i in await self._call("orphans", self.keys.prefix)]

    # -- the fleet's queue ---------------------------------------------------------------------

    async def admit_run(self, session_id: str, max_running: int, max_queued: int) -> Admission:
        verdict, number, running, queued = await self._write(
            "admit",
            self.keys.prefix,
            session_id,
            self.instance,
            self.lease_ms,
            max_running,
            max_queued,
            session_id=session_id,
            parse=list,
        )
        verdict = verdict.decode()
        if verdict == "run":
            self._leases[session_id] = f"{self.instance}:{number}"
        position = number if verdict == "queued" else 0
        return Admission(verdict, position, running, queued)

    async def next_queued(self, max_running: int) -> str | None:
        taken = await self._write(
            "next", self.keys.prefix, self.instance, self.lease_ms, max_running, parse=lambda reply: reply
        )
        if not taken:
            return None
        session_id = taken[0].decode()
        self._leases[session_id] = f"{self.instance}:{taken[1]}"
        return session_id

    async def fleet_queue(self) -> FleetQueue:
        running, *waiting = await self._call("queue", self.keys.prefix, doing="read the queue from")
        return FleetQueue(running, [session_id.decode() for session_id in waiting])

    def holds_run(self, session_id: str) -> bool:
        """Whether this instance holds the session's run lease (as far as it knows)."""
        return session_id in self._leases
