-- nd.sim.util — small helpers shared by the simulated host's stand-ins: ordered JSON printed the way serde_json's
-- pretty printer prints it (nitro-cli's stdout), nitro-cli's timestamps (RFC 3339 with nanoseconds, chrono's
-- AutoSi precision), a cross-process lock (mkdir based, so it needs nothing but the file system) and the
-- environment of a stand-in process (NITRODIAG_SIM_ROOT).
local uv = require "luv"
local fs = require "nd.fs"

local M = {}

-- ---- ordered JSON -------------------------------------------------------------------------------------------
-- Objects keep their key order when built with M.obj{ "Key1", v1, "Key2", v2, ... }; arrays are plain sequences
-- (M.array{} forces an empty table to print as []).
local OBJ, ARR = {}, {}

function M.obj(kv)
  local o = { [OBJ] = {} }
  for i = 1, #kv, 2 do
    o[OBJ][#o[OBJ] + 1] = kv[i]
    o[kv[i]] = kv[i + 1]
  end
  return o
end

-- add_key(o, k, v): appends key k (value v) to an object made by M.obj
function M.add_key(o, k, v)
  o[OBJ][#o[OBJ] + 1] = k
  o[k] = v
  return o
end

function M.array(t)
  local c = { [ARR] = true }
  for i, v in ipairs(t or {}) do c[i] = v end
  return c
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" elseif c == "\r" then return "\\r"
    elseif c == "\b" then return "\\b" elseif c == "\f" then return "\\f" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode(v, indent, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = quote(v)
  elseif t == "number" then
    out[#out + 1] = math.type(v) == "integer" and tostring(v) or string.format("%.17g", v)
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  elseif t == "table" and v[OBJ] then
    if #v[OBJ] == 0 then out[#out + 1] = "{}" return end
    out[#out + 1] = "{\n"
    for i, k in ipairs(v[OBJ]) do
      out[#out + 1] = indent .. "  " .. quote(k) .. ": "
      encode(v[k], indent .. "  ", out)
      out[#out + 1] = i < #v[OBJ] and ",\n" or "\n"
    end
    out[#out + 1] = indent .. "}"
  elseif t == "table" then
    if #v == 0 then out[#out + 1] = "[]" return end
    out[#out + 1] = "[\n"
    for i, e in ipairs(v) do
      out[#out + 1] = indent .. "  "
      encode(e, indent .. "  ", out)
      out[#out + 1] = i < #v and ",\n" or "\n"
    end
    out[#out + 1] = indent .. "]"
  else
    out[#out + 1] = "null"
  end
end

-- json(value) -> the text serde_json::to_string_pretty produces (2-space indent, no final newline)
function M.json(v)
  local out = {}
  encode(v, "", out)
  return table.concat(out)
end

-- ---- time -----------------------------------------------------------------------------------------------------
-- The simulated host's clock is nd.sim.clock: the wall clock, advanced by the simulator past waits nobody watches
-- (NITRODIAG_SIM_CLOCK = "advance:<dir>", set by nd.sim.activate), or the wall clock itself (--sim-realtime).

-- time() -> the simulated host's clock in seconds (a float, microsecond resolution)
-- user_cache_dir() -> the per-user cache ($XDG_CACHE_HOME/nitrodiag, else ~/.cache/nitrodiag) | nil (no HOME): where
-- tools/build-qemu.sh and tools/fetch-enclave-kernel.sh put their builds and the simulator keeps padded EIFs' PCRs
-- (the latter moved by $NITRODIAG_CACHE_DIR). Never TMPDIR, which a run must leave empty.
function M.user_cache_dir()
  local xdg, home = os.getenv("XDG_CACHE_HOME"), os.getenv("HOME")
  if xdg and xdg ~= "" then return xdg .. "/nitrodiag" end
  if home and home ~= "" then return home .. "/.cache/nitrodiag" end
  return nil
end

function M.time()
  return require("nd.sim.clock").time()
end

-- now() -> seconds, nanoseconds of the simulated host's clock
function M.now()
  local t = M.time()
  local sec = math.floor(t)
  -- microsecond clock; add a per-call sub-microsecond part so two stamps in one call differ like the real ones
  M._seq = ((M._seq or uv.os_getpid() % 997) * 7 + 331) % 1000
  return sec, math.floor((t - sec) * 1e6) * 1000 + M._seq
end

-- rfc3339(sec, ns) -> "2021-06-18T21:46:43.249503129+00:00" (chrono's to_rfc3339: 0, 3, 6 or 9 digits)
function M.rfc3339(sec, ns)
  local base = os.date("!%Y-%m-%dT%H:%M:%S", sec)
  local frac
  if ns == 0 then frac = ""
  elseif ns % 1000000 == 0 then frac = string.format(".%03d", ns // 1000000)
  elseif ns % 1000 == 0 then frac = string.format(".%06d", ns // 1000)
  else frac = string.format(".%09d", ns) end
  return base .. frac .. "+00:00"
end

-- millis(sec, ns) -> "2021-06-18T21:46:43.249Z" (the nitro_enclaves.log stamp)
function M.millis(sec, ns)
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%03dZ", ns // 1000000)
end

-- sleep(seconds) without a task (stand-ins are plain processes, blocking is fine there): seconds of the host's
-- clock, which on an advancing clock pass at once (nd.sim.clock.sleep)
function M.sleep(s)
  require("nd.sim.clock").sleep(s)
end

-- with_lock(dir, fn, ...) -> fn's results. The lock is a directory (mkdir is atomic) holding the owner's pid; a lock
-- whose owner died is taken over. Raises when the lock cannot be had within 10 s.
function M.with_lock(dir, fn, ...)
  local lock = dir .. "/.lock"
  local deadline = uv.now() + 10000
  while true do
    local ok, _, code = uv.fs_mkdir(lock, tonumber("700", 8))
    if ok then
      fs.write(lock .. "/pid", tostring(uv.os_getpid()))
      break
    end
    if code ~= "EEXIST" then error("simulator: cannot take the state lock " .. lock .. ": " .. tostring(code), 0) end
    -- a holder that died (killed by a timeout) leaves the lock: take it over at once, or after 10 s without a pid
    local owner = tonumber(fs.read(lock .. "/pid") or "")
    local st = uv.fs_stat(lock)
    local dead = false
    if owner and owner ~= uv.os_getpid() then
      local alive, _, kcode = uv.kill(owner, 0)
      dead = not alive and kcode == "ESRCH"
      -- killed but not yet reaped (a zombie: its parent may be this very process, blocked here): dead too
      local stat = not dead and fs.read("/proc/" .. math.tointeger(owner) .. "/stat")
      if stat and stat:match("^%d+ %b() (%a)") == "Z" then dead = true end
    end
    if dead or (st and not owner and os.time() - st.mtime.sec > 10) then
      uv.fs_unlink(lock .. "/pid")
      uv.fs_rmdir(lock)
    end
    uv.update_time()
    if uv.now() > deadline then error("simulator: state lock " .. lock .. " is busy", 0) end
    uv.sleep(20)
    uv.update_time()
  end
  local res = table.pack(pcall(fn, ...))
  uv.fs_unlink(lock .. "/pid")
  uv.fs_rmdir(lock)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- sim_root() -> the simulated host's root (NITRODIAG_SIM_ROOT) or nil
function M.sim_root()
  local r = os.getenv("NITRODIAG_SIM_ROOT")
  if r and r ~= "" then return r end
  return nil
end

return M
