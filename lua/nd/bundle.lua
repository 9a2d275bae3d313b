-- nd.bundle: the diagnostic bundle for runbooks. The binding (nd.bundlec, lua/l_bundlec.c) only writes members and
-- the manifest; the policy is here: values become JSON through nd.json, and finish/abort of a runbook result render
-- report.md and summary.json with nd.report and put the result's verdict, runbook, times, sim and exit code into the
-- manifest; which commands give the journal and the kernel log (and with which arguments) is decided here too. The
-- methods of a bundle are the binding's, with add_json, finish and abort replaced and add_journal/add_dmesg added.
local C = require "nd.bundlec"
local json = require "nd.json"

local methods = C._methods
local raw_add_json, raw_finish, raw_abort = methods.add_json, methods.finish, methods.abort

local DEFAULT_LINES, DEFAULT_TIMEOUT = 1000, 30

local function opt_num(opts, key, def, argn)
  if type(opts) ~= "table" or opts[key] == nil then return def end
  local v = tonumber(opts[key])
  if not v then error(string.format("bad argument #%d (field '%s' is not a number)", argn, key), 3) end
  return v
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
  if b:_settle() then add_reports(b, result, false, nil) end
  return raw_finish(b, fields(result, false, nil))
end

-- b:abort([reason [, result]]) -> path | nil, msg, code   (a valid bundle marked interrupted)
function methods.abort(b, reason, result)
  if reason == nil then reason = "aborted" end
  if type(reason) ~= "string" and type(reason) ~= "number" then
    error("bad argument #1 to 'abort' (string expected, got " .. type(reason) .. ")", 2)
  end
  reason = tostring(reason)
  if b:_settle(reason) then add_reports(b, result, true, reason) end
  return raw_abort(b, reason, fields(result, true, reason))
end

return { open = C.open, read = C.read, scrub = C.scrub, sweep = C.sweep }
