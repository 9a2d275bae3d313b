-- The simulated host's clock (docs/simulator.md, "Simulated time"). Unless the operator watches in real time
-- (`--sim-realtime`), the simulator advances this clock instead of sleeping: a wait for a boot heartbeat, the next
-- console line or an enclave's end moves the clock to that moment at once, so a host where things take minutes is
-- diagnosed in well under a second while every stamp, age and duration is the one a real host would show.
--
-- The clock is the wall clock plus an offset that only grows, kept in one file of the simulated root and shared by
-- every process of the host (the stand-ins and the runbook's own process): NITRODIAG_SIM_CLOCK = "advance:<dir>",
-- the clock file is <dir>/clock. It holds "<offset> <horizon>": the horizon is the latest moment anyone may advance to (the end of the
-- runbook step that is running, or of a console window the runbook reads); a wait beyond it blocks for real
-- until someone moves the horizon or the waiter is killed, as a process past its time limit would be.
-- A waiter that cannot go on says so in "<dir>/blocked-<pid>" (the clock it had reached): a console window ends
-- once its reader's stand-in has printed everything up to the window's end.
local uv = require "luv"
local fs = require "nd.fs"

local M = {}

-- dir() -> the clock directory of the active simulated host, or nil (real time); file() -> its clock file
function M.dir()
  local v = os.getenv("NITRODIAG_SIM_CLOCK") or ""
  return v:match("^advance:(.+)$")
end
function M.file()
  local d = M.dir()
  return d and (d .. "/clock")
end

local function wall()
  local sec, usec = uv.gettimeofday()
  return sec + usec / 1e6
end

local function read(f)
  local s = fs.read(f) or ""
  local off, hor = s:match("^(%S+) (%S+)")
  off = tonumber(off) or 0
  hor = tonumber(hor)
  if hor and hor ~= hor then hor = nil end -- nan
  return off, hor
end

local function write(f, off, hor)
  local tmp = string.format("%s.%d.tmp", f, uv.os_getpid())
  fs.write(tmp, string.format("%.6f %s", off, hor and string.format("%.6f", hor) or "none"))
  uv.fs_rename(tmp, f)
end

-- init(dir) -> the value for NITRODIAG_SIM_CLOCK: a new clock at wall-clock time (offset 0, no horizon) | nil, err
function M.init(d)
  local ok, err = fs.mkdir_p(d)
  if not ok then return nil, err end
  write(d .. "/clock", 0, nil)
  return "advance:" .. d
end

-- offset() -> seconds the clock is ahead of the wall clock (0 in real time)
function M.offset()
  local f = M.file()
  if not f then return 0 end
  return (read(f))
end

-- time() -> the host's clock, epoch seconds (a float)
function M.time()
  return wall() + M.offset()
end

-- the read-modify-write of the clock file, under the host's clock lock
local function update(fn)
  local f = assert(M.file(), "nd.sim.clock: no simulated clock")
  -- the host is gone (a to-be-closed value of a task closed after the simulated host): nothing left to move
  if not uv.fs_stat(M.dir()) then return 0, nil end
  return require("nd.sim.util").with_lock(M.dir(), function()
    local off, hor = read(f)
    local noff, nhor = fn(off, hor)
    if noff ~= off or nhor ~= hor then write(f, noff, nhor) end
    return noff, nhor
  end)
end

-- advance_to(t) -> the clock after: moves it to t (never backwards, never past the horizon)
function M.advance_to(t)
  if not M.file() then return wall() end
  local off = update(function(off, hor)
    local target = hor and math.min(t, hor) or t
    local want = target - wall()
    if want > off then return want, hor end
    return off, hor
  end)
  return wall() + off
end

-- set_horizon(t | nil) -> the previous horizon (restore it with set_horizon(prev) when done)
function M.set_horizon(t)
  if not M.file() then return nil end
  local prev
  update(function(off, hor)
    prev = hor
    return off, t
  end)
  return prev
end

-- horizon() -> the current horizon or nil
function M.horizon()
  local f = M.file()
  if not f then return nil end
  local _, hor = read(f)
  return hor
end

local function blocked_file(pid) return string.format("%s/blocked-%d", M.dir(), pid or uv.os_getpid()) end

-- blocked(pid) -> the clock a waiter of that process had reached when it blocked, or nil
function M.blocked(pid)
  if not M.file() then return nil end
  return tonumber(fs.read(blocked_file(pid)) or "")
end

-- How fast a live wait (a console streamed to whoever reads it, with no time limit anyone set) may move an
-- advancing clock when no horizon bounds it: host seconds per real second. Someone reading such a stream reads it
-- as it comes; without this pace a periodic line would move the clock ahead as fast as the stand-in can print.
M.LIVE_PACE = 20

-- wait_until(t, poll, live) -> true when the clock has reached t, false after `poll` real seconds without reaching
-- it. For plain processes (stand-ins): blocks. In real time it sleeps (at most poll seconds); on an advancing clock
-- it advances to t when the horizon allows and returns at once, else it records itself as blocked (with the clock
-- it reached: everything due until then is done) and sleeps poll. A live wait with no horizon advances at
-- LIVE_PACE. t = math.huge never advances (nothing is due: only someone else's advance or a kill ends that wait).
function M.wait_until(t, poll, live)
  poll = poll or 0.05
  if not M.file() then
    local d = t - wall()
    if d <= 0 then return true end
    uv.sleep(math.floor(math.min(d, poll) * 1000 + 0.5))
    return wall() >= t
  end
  local paced = live and not M.horizon()
  local target = paced and math.min(t, M.time() + poll * M.LIVE_PACE) or t
  local now = target < math.huge and M.advance_to(target) or M.time()
  if now >= t then
    uv.fs_unlink(blocked_file())
    return true
  end
  if not paced then fs.write(blocked_file(), string.format("%.6f", now)) end
  uv.sleep(math.floor(poll * 1000 + 0.5))
  return M.time() >= t
end

-- sleep(seconds): a stand-in's wait of that many of the host's seconds (see wait_until)
function M.sleep(s)
  local t = M.time() + s
  while not M.wait_until(t) do end
  M.unblock()
end

-- unblock(): this process goes on (removes its blocked mark)
function M.unblock()
  if M.file() then uv.fs_unlink(blocked_file()) end
end

return M
