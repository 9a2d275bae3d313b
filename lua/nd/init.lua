-- nd — the engine's Lua core: tasks (coroutines) on the one libuv loop shared with the C core.
--
--   local nd = require "nd"
--   local t = nd.spawn(function() return nd.proc.run{"nitro-cli", "describe-enclaves"} end)
--   nd.sleep(0.5)
--   local ok, res = t:join()
--
-- Every primitive that waits (nd.proc.run, sockets, HTTP, nd.sleep) must be called from a task or from the main
-- chunk of a runbook/REPL line (which the host runs as a task). Submodules load lazily: nd.proc is require "nd.proc".
local uv = require "luv"

local M = {}

local function report(err)
  io.stderr:write("nitrodiag: error in task: ", tostring(err), "\n")
end

-- Resumes co with the arguments and reports an error that escapes it (tasks catch their own).
function M.resume(co, ...)
  -- The host runs the loop one iteration at a time and checks after each whether what it waits for is done: stop
  -- this iteration so it checks now rather than after the next unrelated event.
  uv.stop()
  local ok, err = coroutine.resume(co, ...)
  if not ok then report(debug.traceback(co, err)) end
  return ok
end

local function current()
  local co, main = coroutine.running()
  if main then error("this call waits, so it must run inside a task (nd.spawn) or a runbook step", 3) end
  return co
end

-- The simulated host's advancing clock (nd.sim.clock) when one is active in this process, else nil.
local function simclock()
  local v = os.getenv("NITRODIAG_SIM_CLOCK")
  if v and v:find("^advance:") then return require("nd.sim.clock") end
  return nil
end
M.simclock = simclock

-- Suspends the current task for seconds. Closing the task while it sleeps stops the timer. On a simulated host the
-- seconds are the host's: its clock (nd.sim.clock) is advanced past the wait at once, as far as the running step's
-- limit allows (beyond it the task waits for real, until the step times out). opts.real = true waits wall-clock
-- seconds (test and framework timeouts).
function M.sleep(seconds, opts)
  local co = current()
  local timer = uv.new_timer()
  local guard <close> = setmetatable({}, { __close = function()
    if not timer:is_closing() then timer:close() end
  end })
  local clock = not (opts and opts.real) and simclock()
  if clock then
    local t = clock.time() + seconds
    if clock.advance_to(t) < t then
      -- past the horizon: wait for real, looking again now and then (the step's timeout ends it)
      timer:start(50, 50, function() if clock.time() >= t then M.resume(co) end end)
      coroutine.yield()
      return
    end
    -- a moment of real time still passes: a loop polling another process (a stand-in) lets it run
    seconds = math.min(seconds, 0.01)
  end
  uv.update_time()
  timer:start(math.max(0, math.floor(seconds * 1000 + 0.5)), 0, function() M.resume(co) end)
  coroutine.yield()
end

-- Monotonic time in seconds: on a simulated host with an advancing clock, plus how far that clock is ahead (so
-- step durations and deadlines are the host's). It never goes back: what a closed host's clock had advanced stays.
local clock_file, clock_off, clock_base = nil, 0, 0
function M.now()
  local clock = simclock()
  local f = clock and clock.file()
  if f ~= clock_file then clock_base, clock_file, clock_off = clock_base + clock_off, f, 0 end
  if clock then
    local off = clock.offset()
    if off > clock_off then clock_off = off end
  end
  return uv.hrtime() / 1e9 + clock_base + clock_off
end

local Task = {}
Task.__index = Task

-- Starts fn(...) as a task, running it at once until it first waits. Returns the task.
function M.spawn(fn, ...)
  local task = setmetatable({ done = false, waiters = {} }, Task)
  local args = table.pack(...)
  task.co = coroutine.create(function()
    local res = table.pack(xpcall(fn, debug.traceback, table.unpack(args, 1, args.n)))
    task.ok = res[1]
    if res[1] then
      task.results = table.pack(table.unpack(res, 2, res.n))
    else
      task.error = res[2]
    end
    task:_finish()
  end)
  M.resume(task.co)
  return task
end

function Task:_finish()
  self.done = true
  local waiters = self.waiters
  self.waiters = {}
  for _, co in ipairs(waiters) do
    -- Resume from the loop, not from inside this task's own coroutine.
    local idle = uv.new_timer()
    idle:start(0, 0, function() idle:close(); M.resume(co) end)
  end
end

-- Waits for the task: returns true, results… or false, error (with traceback). Cancelled tasks return
-- false, "cancelled".
function Task:join()
  if not self.done then
    local co = current()
    table.insert(self.waiters, co)
    local guard <close> = setmetatable({}, { __close = function()
      for i, w in ipairs(self.waiters) do if w == co then table.remove(self.waiters, i) break end end
    end })
    repeat coroutine.yield() until self.done
  end
  if self.ok then return true, table.unpack(self.results, 1, self.results.n) end
  return false, self.error
end

-- Cancels a waiting task: its pending to-be-closed values are closed (processes killed, timers stopped).
function Task:cancel(reason)
  if self.done then return false end
  local status = coroutine.status(self.co)
  if status == "suspended" then
    coroutine.close(self.co)
    self.ok = false
    self.error = reason or "cancelled"
    self.cancelled = true
    self:_finish()
    return true
  end
  return false
end

-- Waits for several tasks; returns a list of {ok, results…} in the same order.
function M.join_all(tasks)
  local out = {}
  for i, t in ipairs(tasks) do out[i] = table.pack(t:join()) end
  return out
end

return setmetatable(M, {
  __index = function(t, k)
    local ok, mod = pcall(require, "nd." .. k)
    if ok then rawset(t, k, mod) return mod end
    return nil
  end,
})
