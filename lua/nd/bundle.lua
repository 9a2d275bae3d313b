-- nd.bundle: the diagnostic bundle for runbooks. The binding (nd.bundlec, lua/l_bundlec.c) only writes members and
-- the manifest; the policy is here: values become JSON through nd.json, and finish/abort of a runbook result render
-- report.md and summary.json with nd.report and put the result's verdict, runbook, times, sim and exit code into the
-- manifest; which commands give the journal and the kernel log (and with which arguments) is decided here too, and
-- commands run through nd.proc, the one process runner (the binding only records their results). The methods of a
-- bundle are the binding's, with add_json, finish and abort replaced and add_command/add_journal/add_dmesg added.
local C = require "nd.bundlec"
local json = require "nd.json"
local proc = require "nd.proc"
local uv = require "luv"

local methods = C._methods
local raw_add_json, raw_finish, raw_abort = methods.add_json, methods.finish, methods.abort

local DEFAULT_LINES, DEFAULT_TIMEOUT = 1000, 30
local COMMAND_CAP, KILL_GRACE = 16 * 1024 * 1024, 1
local CLOSED = "nd.bundle: the bundle is already finished or aborted"

local function opt_num(opts, key, def, argn)
  if type(opts) ~= "table" or opts[key] == nil then return def end
  local v = tonumber(opts[key])
  if not v then error(string.format("bad argument #%d (field '%s' is not a number)", argn, key), 3) end
  return v
end

-- The commands in flight of each bundle, oldest first: { name, argv, started_at, h (the nd.proc handle) }.
local running = setmetatable({}, { __mode = "k" })

local function wallclock()
  local sec, usec = uv.gettimeofday()
  return sec + usec / 1e6
end

-- Records a command that did not finish because the run was interrupted: what it printed so far is kept (status
-- error, error = why, no exit code); when even that cannot be read, an entry with no member says why. Never raises:
-- it runs from __close and from finish/abort, before the command is killed.
local function record_interrupted(b, cmd, why)
  if b:_state() == "closed" then return end
  local okp, out = pcall(cmd.h.output, cmd.h)
  if okp and type(out) == "table" and
    pcall(b._add_proc_result, b, cmd.name, cmd.argv, cmd.started_at, cmd.lines, out, nil, why) then
    return
  end
  pcall(b.record, b, cmd.name, { status = "error", kind = "command", error = why, started_at = cmd.started_at,
    source = table.concat(cmd.argv, " "):sub(1, 1023) })
end

local function forget(b, cmd)
  local list = running[b]
  for i = #(list or {}), 1, -1 do
    if list[i] == cmd then table.remove(list, i) end
  end
end

-- A command's guard, closed when its task is cancelled (step timeout, SIGINT/SIGTERM) before the command ended:
-- the command is recorded as interrupted with what it printed so far; then its nd.proc handle's own __close kills
-- its process group (reaped on the loop).
local Guard = { __close = function(g)
  if g.cmd.done or g.cmd.settled then return end
  forget(g.b, g.cmd)
  record_interrupted(g.b, g.cmd, "interrupted before the command finished (the command was killed)")
end }

-- b:add_command(name, argv [, {timeout = 30, cap = 16 MiB, lines = n}]) -> entry | nil, msg, code
function methods.add_command(b, name, argv, opts)
  if b:_state() == "closed" then error(CLOSED, 2) end
  if type(name) ~= "string" and type(name) ~= "number" then
    error("bad argument #1 to 'add_command' (string expected, got " .. type(name) .. ")", 2)
  end
  if type(argv) ~= "table" then error("bad argument #2 to 'add_command' (table expected, got " .. type(argv) .. ")", 2) end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'add_command' (table expected, got " .. type(opts) .. ")", 2)
  end
  local timeout = opt_num(opts, "timeout", DEFAULT_TIMEOUT, 3)
  local cap, lines = opt_num(opts, "cap", 0, 3), opt_num(opts, "lines", 0, 3)
  if #argv < 1 then error("nd.bundle: add_command needs a non-empty argv table", 2) end
  local args = {}
  for i = 1, #argv do
    local a = argv[i]
    if type(a) ~= "string" and type(a) ~= "number" then error(string.format("nd.bundle: argv[%d] is not a string", i), 2) end
    args[i] = tostring(a)
  end
  local cmd = { name = tostring(name), argv = args, started_at = wallclock(), lines = lines > 0 and math.min(math.floor(lines), math.maxinteger) or 0 }
  local spec = { timeout = timeout, kill_grace = KILL_GRACE, cap = cap > 0 and cap or COMMAND_CAP }
  table.move(args, 1, #args, 1, spec)
  local h <close> = proc.start(spec)
  cmd.h = h
  local list = running[b] or {}
  running[b] = list
  list[#list + 1] = cmd
  local guard <close> = setmetatable({ b = b, cmd = cmd }, Guard)
  local r, _, code = h:wait()
  cmd.done = true
  forget(b, cmd)
  if cmd.settled then return nil, "interrupted: the bundle was closed before the command finished", "ECANCELED" end
  return b:_add_proc_result(cmd.name, args, cmd.started_at, cmd.lines, r, code)
end

-- Before finish/abort: the commands still running are recorded as interrupted (with reason) and cancelled (SIGTERM,
-- then SIGKILL; their tasks then get ECANCELED). Returns true when the bundle is open and unbroken.
local function settle(b, reason)
  local state = b:_state()
  if state == "closed" then return false end
  local list = running[b] or {}
  running[b] = nil
  for i = #list, 1, -1 do -- newest first
    local cmd = list[i]
    cmd.settled = true
    record_interrupted(b, cmd, "interrupted before the command finished: " .. reason)
    cmd.h:cancel()
  end
  return state == "open"
end

-- b:add_journal(unit [, {lines = 1000, timeout = 30}]) -> entry   (journalctl -u UNIT -o cat --no-pager -n LINES)
function methods.add_journal(b, unit, opts)
  if type(unit) ~= "string" and type(unit) ~= "number" then
    error("bad argument #1 to 'add_journal' (string expected, got " .. type(unit) .. ")", 2)
  end
  unit = tostring(unit)
  local lines, timeout = opt_num(opts, "lines", DEFAULT_LINES, 2), opt_num(opts, "timeout", DEFAULT_TIMEOUT, 2)
  if lines <= 0 then lines = DEFAULT_LINES end
  local n = string.format("%d", math.floor(lines))
  local name = ("journal_" .. unit .. ".log"):gsub("/", "_")
  return b:add_command(name, { "journalctl", "-u", unit, "-o", "cat", "--no-pager", "-n", n }, { timeout = timeout })
end

-- b:add_dmesg([{lines = 1000, timeout = 30}]) -> entry   (dmesg, its last LINES lines, as dmesg.tail)
function methods.add_dmesg(b, opts)
  local lines, timeout = opt_num(opts, "lines", DEFAULT_LINES, 1), opt_num(opts, "timeout", DEFAULT_TIMEOUT, 1)
  if lines <= 0 then lines = DEFAULT_LINES end
  return b:add_command("dmesg.tail", { "dmesg" }, { timeout = timeout, lines = lines })
end

local REPORT = { kind = "report", source = "nd.report" }

-- b:add_json(name, value [, {kind=, source=}]) -> entry   (value encoded by nd.json: arrays, nulls and key order)
function methods.add_json(b, name, value, opts)
  local ok, text = pcall(json.encode, value)
  if not ok then error("nd.bundle: cannot encode the value as JSON: " .. tostring(text), 2) end
  return raw_add_json(b, name, text, opts)
end

-- report.md and summary.json from nd.report; a report that cannot be rendered must not cost the bundle: record why.
local function add_reports(b, result, interrupted, reason)
  if type(result) ~= "table" then return end
  local okr, report = pcall(require, "nd.report")
  if not okr then return end
  local ok, md, summary = pcall(report.render, result, { interrupted = interrupted, interrupt_reason = reason,
    topdir = b:_topdir(), artifacts = b:entries() })
  if not ok then
    b:record("report.md", { status = "error", kind = "report", error = md ~= nil and tostring(md) or "error" })
    return
  end
  if type(summary) == "table" then methods.add_json(b, "summary.json", summary, REPORT) end
  if type(md) == "string" then b:add_string("report.md", md, REPORT) end
end

local FIELDS = { "interrupted", "interrupt_reason", "verdict", "runbook_name", "started_at", "ended_at", "sim",
  "exit_code" }

-- The manifest fields of a run: interrupted and why, and what the result says of itself.
local function fields(result, interrupted, reason)
  local f = { interrupted = interrupted, interrupt_reason = reason == nil and json.null or reason }
  if type(result) == "table" then
    for _, k in ipairs({ "verdict", "runbook", "started_at", "ended_at", "sim" }) do
      if type(result[k]) == "string" then f[k == "runbook" and "runbook_name" or k] = result[k] end
    end
    if math.type(result.exit_code) == "integer" then f.exit_code = result.exit_code end
  end
  return json.encode(json.ordered(f, FIELDS))
end

-- b:finish([result]) -> path | nil, msg, code
function methods.finish(b, result)
  if settle(b, "the bundle was finished while the command was running") then add_reports(b, result, false, nil) end
  return raw_finish(b, fields(result, false, nil))
end

-- b:abort([reason [, result]]) -> path | nil, msg, code   (a valid bundle marked interrupted)
function methods.abort(b, reason, result)
  if reason == nil then reason = "aborted" end
  if type(reason) ~= "string" and type(reason) ~= "number" then
    error("bad argument #1 to 'abort' (string expected, got " .. type(reason) .. ")", 2)
  end
  reason = tostring(reason)
  if settle(b, reason) then add_reports(b, result, true, reason) end
  return raw_abort(b, reason, fields(result, true, reason))
end

return { open = C.open, read = C.read, scrub = C.scrub, sweep = C.sweep }
