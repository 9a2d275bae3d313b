-- nd.nitro — nitro-cli for runbooks: runs its subcommands through nd.proc (own process group, timeout, cancellable
-- by closing the task) with the nitro-cli path from nd.host.nitro_cli(), and returns parsed results.
--
-- Every runner returns `value, record` on success and `nil, message, code, record` on failure, where
--   record = { argv, exit_code, stdout, stderr, duration, timed_out, status, errors, blocks, root }
--   errors = nd.nitrocli.parse_errors(stderr) (blocks[1] is the root cause; an E39 after it is secondary)
--   code   = the root cause's code ("E26") when nitro-cli printed an error block, "ETIMEDOUT" on timeout,
--            "ENOENT"/"EACCES" when nitro-cli cannot be started, "EBADMSG" when its output is not recognised
--   message = the root block's headline, or a one-line description carrying the first line of the raw output.
local proc = require "nd.proc"
local nd = require "nd"
local host = require "nd.host"
local C = require "nd.nitrocli"

local M = {}

M.parse_errors = C.parse_errors
M.parse_err_log = C.parse_err_log
M.parse_log_line = C.parse_log_line
M.parse_json = C.parse_json
M.argv = C.argv
M.err_log_time = C.err_log_time

M.DEFAULT_TIMEOUT = 60
-- run-enclave waits for the boot heartbeat: at least 180 s on a real host (docs/nitro.md), plus margin.
M.RUN_TIMEOUT = 240

local function first_line(s)
  return (s or ""):match("^%s*([^\n]*)") or ""
end

-- A console window (seconds of the host's clock) on a simulated host whose clock the simulator advances
-- (nd.sim.clock): the stand-in prints the console as the clock moves, never past the window's end (the horizon);
-- the window ends once the stand-in has printed everything up to its end (it marks itself blocked there), and when
-- it has nothing more to print before the end, the clock is moved to the end. Ends like a timeout, as on a real host.
local function invoke_window(argv, opts, clock, window)
  local t_end = clock.time() + window
  local prev = clock.horizon()
  clock.set_horizon(prev and math.min(prev, t_end) or t_end)
  local restore <close> = setmetatable({}, { __close = function() clock.set_horizon(prev) end })
  argv.timeout = window + 60 -- a real-time bound for a stand-in that stopped answering
  argv.on_line, argv.env, argv.cap = opts.on_line, opts.env, opts.cap
  local h <close> = proc.start(argv)
  local ended = false
  local watcher = nd.spawn(function()
    while true do
      nd.sleep(0.02, { real = true })
      local at = clock.blocked(h:pid())
      if at and at >= t_end - 1e-6 then
        ended = true
        h:cancel()
        return
      elseif at then
        clock.advance_to(t_end)
      end
    end
  end)
  local stop <close> = setmetatable({}, { __close = function() watcher:cancel() end })
  local r, err, code = h:wait()
  if not r then return nil, err, code, { argv = argv } end
  if ended then r.timed_out, r.status = true, string.format("timed out after %g s", window) end
  return r
end

-- Runs a prepared argv. Returns the record, or nil, msg, code when nitro-cli cannot be started.
local function invoke(argv, opts)
  local clock = opts.window and nd.simclock()
  local r, err, code
  if clock then
    r, err, code = invoke_window(argv, opts, clock, opts.window)
  else
    argv.timeout = opts.timeout
    argv.on_line = opts.on_line
    argv.env = opts.env
    argv.cap = opts.cap
    r, err, code = proc.run(argv)
  end
  if not r then return nil, err, code, { argv = argv } end
  local rec = {
    argv = argv, exit_code = r.exit_code, stdout = r.stdout, stderr = r.stderr, duration = r.duration,
    timed_out = r.timed_out, status = r.status, signal = r.signal,
  }
  rec.errors = C.parse_errors(r.stderr)
  rec.blocks = rec.errors.blocks
  rec.root = rec.errors.root
  return rec
end

local function failure(rec, what)
  if rec.timed_out then
    return nil, string.format("nitro-cli %s: %s", what, rec.status), "ETIMEDOUT", rec
  end
  if rec.root then return nil, rec.root.headline, rec.root.code, rec end
  local line = first_line(rec.stderr)
  if line == "" then line = first_line(rec.stdout) end
  return nil, string.format("nitro-cli %s failed (%s), unrecognised output: %s", what, rec.status,
    line ~= "" and line or "(nothing printed)"), "EBADMSG", rec
end

-- Runs `kind` with builder options, then parses stdout as kind's JSON.
local function json_command(kind, bopts, opts, default_timeout)
  local argv, err, code = C.argv(kind, bopts)
  if not argv then return nil, err, code end
  opts.timeout = opts.timeout or default_timeout
  local rec, extra
  rec, err, code, extra = invoke(argv, opts)
  if not rec then return nil, err, code, extra end
  if rec.exit_code ~= 0 or rec.timed_out then return failure(rec, kind) end
  local value, rest = C.parse_json(kind, rec.stdout)
  if value == nil then
    return nil, string.format("nitro-cli %s: %s", kind, rest), "EBADMSG", rec
  end
  rec.rest = rest
  return value, rec
end

-- describe_enclaves([opts]) -> list of enclaves, record | nil, msg, code, record
function M.describe_enclaves(opts)
  return json_command("describe-enclaves", {}, opts or {}, M.DEFAULT_TIMEOUT)
end

-- run_enclave{eif=, memory=, cpu_count=|cpu_ids=, cid=, name=, debug=, attach_console=, on_line=, timeout=, env=}
--   -> info, record (record.console: what followed the JSON on stdout) | nil, msg, code, record
function M.run_enclave(o)
  assert(type(o) == "table", "nd.nitro.run_enclave: options table expected")
  -- with an attached console the timeout is a console window: a wait on the host's clock (simulated time on the
  -- simulated host, nd.host.real_wait)
  local timeout = o.timeout
  if o.attach_console and timeout then timeout = host.real_wait(timeout) end
  local v, rec, code, rec2 = json_command("run-enclave", o,
    { timeout = timeout, window = o.attach_console and o.timeout or nil, on_line = o.on_line, env = o.env },
    (not o.attach_console) and M.RUN_TIMEOUT or nil)
  if v ~= nil then rec.console = rec.rest end
  return v, rec, code, rec2
end

-- terminate{id=|all=true} -> result (object, or list for all), record | nil, msg, code, record
function M.terminate(o)
  assert(type(o) == "table", "nd.nitro.terminate: options table expected")
  return json_command("terminate-enclave", o, { timeout = o.timeout, env = o.env }, M.DEFAULT_TIMEOUT)
end

-- build_enclave{docker_uri=, docker_dir=, output=, env=, timeout=} -> {Measurements = …}, record | nil, …
function M.build_enclave(o)
  assert(type(o) == "table", "nd.nitro.build_enclave: options table expected")
  return json_command("build-enclave", o, { timeout = o.timeout, env = o.env, on_line = o.on_line }, 1800)
end

-- describe_eif(path [, opts]) -> describe-eif table, record | nil, …
function M.describe_eif(path, opts)
  opts = opts or {}
  return json_command("describe-eif", { eif = path }, opts, M.DEFAULT_TIMEOUT)
end

-- console{id=, on_line=, timeout=, disconnect_timeout=} -> record (record.stdout: the console text) | nil, …
-- nitro-cli console runs until the enclave stops; a timeout ends it (that is not a failure here).
function M.console(o)
  assert(type(o) == "table", "nd.nitro.console: options table expected")
  local argv, err, code = C.argv("console", o)
  if not argv then return nil, err, code end
  local rec
  -- the timeout is a console window: a wait on the host's clock (as for an attached run-enclave)
  rec, err, code = invoke(argv, { timeout = o.timeout and host.real_wait(o.timeout), window = o.timeout,
    on_line = o.on_line, env = o.env })
  if not rec then return nil, err, code end
  if rec.root or (rec.exit_code ~= 0 and not rec.timed_out) then return failure(rec, "console") end
  return rec
end

-- explain(code) -> the text nitro-cli prints (it writes to stderr), record | nil, …
function M.explain(code_str, opts)
  local argv, err, code = C.argv("explain", { code = code_str })
  if not argv then return nil, err, code end
  local rec
  rec, err, code = invoke(argv, { timeout = (opts and opts.timeout) or M.DEFAULT_TIMEOUT })
  if not rec then return nil, err, code end
  if rec.exit_code ~= 0 then return failure(rec, "explain") end
  local text = (rec.stderr ~= "" and rec.stderr or rec.stdout):gsub("\n$", "")
  return text, rec
end

-- read_err_log(path) -> parsed err log (path read under nd.host.root()) | nil, msg, code
function M.read_err_log(path)
  local fs = require "nd.fs"
  local full = host.path(path)
  local text, err, code = fs.read(full)
  if not text then return nil, err, code end
  local l = C.parse_err_log(text)
  l.path = path
  l.timestamp = C.err_log_time(path)
  return l
end

-- held(list) -> { memory_mib, cpu_ids, cpus } — what the enclaves of a describe-enclaves list hold together (their
-- MemoryMiB and CPUIDs; entries without them count nothing): the `held` input of nd.preflight.check.
function M.held(list)
  local h = { memory_mib = 0, cpu_ids = {}, cpus = 0 }
  for _, e in ipairs(type(list) == "table" and list or {}) do
    if type(e) == "table" then
      h.memory_mib = h.memory_mib + (math.tointeger(e.MemoryMiB) or 0)
      h.cpus = h.cpus + (tonumber(e.NumberOfCPUs) or 0)
      for _, id in ipairs(type(e.CPUIDs) == "table" and e.CPUIDs or {}) do
        if math.tointeger(id) then h.cpu_ids[#h.cpu_ids + 1] = math.tointeger(id) end
      end
    end
  end
  return h
end

-- enclave_started(enclave) -> start time (epoch seconds) of an enclave from describe-enclaves (its ProcessID: the
-- enclave process nitro-cli forks for it; json_output.rs fills ProcessID with std::process::id() of that process),
-- and its age in seconds | nil, msg, code. Reads /proc/<pid>/stat (field 22, clock ticks since boot, USER_HZ 100)
-- and /proc/stat's btime under the host root. A simulated host that has no such files answers from its own record.
function M.enclave_started(e)
  local pid = type(e) == "table" and math.tointeger(e.ProcessID) or math.tointeger(e)
  if not pid or pid <= 0 then return nil, "enclave_started: no ProcessID", "EINVAL" end
  local fs = require "nd.fs"
  local stat, err, code = fs.read(host.path("/proc/" .. pid .. "/stat"))
  if not stat then return nil, "enclave process " .. pid .. ": " .. tostring(err), code end
  local after = stat:match("^%d+ %b() (.*)$")
  local fields = {}
  for f in (after or ""):gmatch("%S+") do fields[#fields + 1] = f end
  local ticks = tonumber(fields[20]) -- field 22 of the whole line: the 20th after "pid (comm)"
  local btime = tonumber((fs.read(host.path("/proc/stat")) or ""):match("\nbtime (%d+)") or "")
  if not ticks or not btime then return nil, "enclave process " .. pid .. ": unreadable /proc stat", "EBADMSG" end
  local started = btime + ticks / 100
  local now = host.sim() and require("nd.sim.util").time() or os.time()
  return started, math.max(0, now - started)
end

return M
