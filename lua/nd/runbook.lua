-- nd.runbook — the runbook framework: finding, loading and validating runbooks, checking their arguments, and
-- running their steps as tasks on the shared loop with per-step timeouts, a whole-run deadline, findings, progress
-- output and (when the runbook collects) a bundle. The format is documented in docs/runbooks.md.
--
-- A run always ends with a result (see docs/runbooks.md for its fields), whatever the steps did: a step that raises
-- is recorded as failed with its traceback; a step past its timeout is cancelled (its processes are killed) and
-- recorded as timeout; when the deadline hits, the running step is cancelled, the rest are skipped, and the result
-- says so (exit status 4).
local nd = require "nd"
local uv = require "luv"
local fs = require "nd.fs"
local host = require "nd.host"
local json = require "nd.json"

local M = {}

M.EXIT = { ok = 0, failed = 1, usage = 2, crashed = 3, deadline = 4 }
M.ALWAYS_GRACE = 15 -- seconds an `always` step may take once the run was stopped
local SEVERITY_RANK = { ok = 0, skipped = 0, warn = 1, fail = 2, timeout = 2 }

---------------------------------------------------------------------------------------------------------------------
-- Finding runbooks
---------------------------------------------------------------------------------------------------------------------

-- The directories searched, in order: ./, $NITRODIAG_PATH (colon-separated), /etc/nitrodiag/runbooks, the installed
-- share directory, then the source tree's scripts/ (when running from a build directory).
function M.search_path()
  local dirs = { "." }
  local envp = os.getenv("NITRODIAG_PATH")
  if envp and envp ~= "" then
    for d in envp:gmatch("[^:]+") do dirs[#dirs + 1] = d end
  end
  dirs[#dirs + 1] = "/etc/nitrodiag/runbooks"
  dirs[#dirs + 1] = host.share_dir() .. "/runbooks"
  local src = host.source_dir()
  if src ~= "" and fs.is_dir(src .. "/scripts") then dirs[#dirs + 1] = src .. "/scripts" end
  return dirs
end

-- find(name) -> path | nil, msg. A name with a '/' or ending in .lua is a file path.
function M.find(name)
  -- In ./ only a file that looks like a runbook counts (any other Lua file there is not one): the same rule as
  -- list(), so `nitrodiag list` and `nitrodiag <name>` always agree on the file, whether it loads or not.
  local p, why = fs.find_lua(name, M.search_path(), function(path, d) return d ~= "." or M.looks_like_runbook(path) end)
  if p then return p end
  if why == "missing" then return nil, "no such runbook file: " .. name end
  if why == "bad name" then return nil, "not a runbook name: " .. name end
  return nil, "unknown runbook: " .. name
end

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

-- suggest(word, candidates) -> the closest candidate when it is close enough, else nil
function M.suggest(word, candidates)
  local best, bestd
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if (not bestd or d < bestd) then best, bestd = c, d end
  end
  if best and bestd <= math.max(2, #word // 3) then return best end
  return nil
end

-- list() -> { {name, description, path, shadows = {paths}} } for every runbook on the search path (first wins)
function M.list()
  local seen, out = {}, {}
  for _, d in ipairs(M.search_path()) do
    local names = fs.list(d) or {}
    for _, f in ipairs(names) do
      local name = f:match("^(.+)%.lua$")
      if name and not name:match("_spec$") then
        local path = d .. "/" .. f
        if seen[name] then
          table.insert(seen[name].shadows, path)
        elseif d ~= "." or M.looks_like_runbook(path) then
          -- Files in ./ that are not runbooks (any other Lua file) are not listed; one that looks like a runbook is
          -- listed even when it cannot load, because it is the one `nitrodiag <name>` runs (find() has this rule).
          local def = M.load(path)
          local e = { name = name, path = path, shadows = {}, broken = def == nil or nil,
                      description = def and def.description or "(cannot load: see `nitrodiag run " .. name .. "`)" }
          seen[name] = e
          out[#out + 1] = e
        end
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

---------------------------------------------------------------------------------------------------------------------
-- Loading and validating
---------------------------------------------------------------------------------------------------------------------

local ARG_TYPES = { string = true, number = true, integer = true, boolean = true, list = true, rest = true }

-- looks_like_runbook(path): a cheap text check, so that `list` never executes arbitrary Lua files found in ./
function M.looks_like_runbook(path)
  local f = io.open(path, "r")
  if not f then return false end
  local text = f:read(65536) or ""
  f:close()
  return text:find("description", 1, true) ~= nil and text:find("steps", 1, true) ~= nil
end

-- load(path) -> def | nil, msg. The file runs in its own environment (reading globals through _G) and returns
-- the runbook table; nmap-style files that set globals (description, args, steps…) work too. A file that returns
-- nothing (or not a table) and sets neither is not a runbook: a load error, never a silent success.
function M.load(path)
  local env = setmetatable({}, { __index = _G })
  local chunk, err = loadfile(path, "t", env)
  if not chunk then return nil, err end
  local ok, def = pcall(chunk)
  if not ok then return nil, path .. ": " .. tostring(def) end
  if type(def) ~= "table" then
    if rawget(env, "description") == nil and rawget(env, "steps") == nil then
      return nil, string.format("%s: not a runbook: the file returned %s (a runbook returns a table with a " ..
        "description and steps)", path, def == nil and "nothing" or ("a " .. type(def)))
    end
    def = { description = rawget(env, "description"), categories = rawget(env, "categories"),
            args = rawget(env, "args"), steps = rawget(env, "steps"), deadline = rawget(env, "deadline"),
            collect = rawget(env, "collect"), name = rawget(env, "name"), report = rawget(env, "report") }
  end
  def.path = path
  def.name = def.name or fs.basename(path):gsub("%.lua$", "")
  if type(def.description) ~= "string" then return nil, path .. ": a runbook needs a description (string)" end
  if type(def.steps) ~= "table" or #def.steps == 0 then return nil, path .. ": a runbook needs a list of steps" end
  for i, st in ipairs(def.steps) do
    if type(st) ~= "table" or type(st.name) ~= "string" or type(st.run) ~= "function" then
      return nil, string.format("%s: step %d needs a name and a run function", path, i)
    end
  end
  def.args = def.args or {}
  for i, a in ipairs(def.args) do
    if type(a.name) ~= "string" then return nil, string.format("%s: argument %d has no name", path, i) end
    a.type = a.type or "string"
    if not ARG_TYPES[a.type] then
      return nil, string.format("%s: argument %s has an unknown type %s", path, a.name, tostring(a.type))
    end
  end
  def.categories = def.categories or {}
  return def
end

local function convert(a, raw)
  if a.type == "string" then return raw end
  if a.type == "number" or a.type == "integer" then
    local n = tonumber(raw)
    if not n or (a.type == "integer" and math.type(n) ~= "integer" and n ~= math.floor(n)) then
      return nil, string.format("argument %s must be %s, got %q", a.name, a.type == "integer" and "an integer" or "a number", raw)
    end
    if a.type == "integer" then n = math.tointeger(n) end
    if a.min and n < a.min then return nil, string.format("argument %s must be at least %s, got %s", a.name, a.min, raw) end
    if a.max and n > a.max then return nil, string.format("argument %s must be at most %s, got %s", a.name, a.max, raw) end
    return n
  end
  if a.type == "boolean" then
    local l = raw:lower()
    if l == "true" or l == "yes" or l == "1" or l == "on" then return true end
    if l == "false" or l == "no" or l == "0" or l == "off" then return false end
    return nil, string.format("argument %s must be true or false, got %q", a.name, raw)
  end
  if a.type == "list" then
    local out = json.array({})
    for item in raw:gmatch("[^,]+") do out[#out + 1] = item:match("^%s*(.-)%s*$") end
    return out
  end
end

-- check_choices(def, a, val) -> nil when val is one of a.choices (every item, for a list), else the usage message
function M.check_choices(def, a, val)
  if not a.choices then return nil end
  local items = a.type == "list" and val or { val }
  for _, item in ipairs(items) do
    local okc = false
    for _, c in ipairs(a.choices) do if c == item then okc = true end end
    if not okc then
      local names = {}
      for _, c in ipairs(a.choices) do names[#names + 1] = tostring(c) end
      local sug = type(item) == "string" and M.suggest(item, names)
      return string.format("%s: argument %s must be %s %s, got %q%s", def.name, a.name,
        a.type == "list" and "a comma-separated list of" or "one of", table.concat(names, ", "), tostring(item),
        sug and string.format(" (did you mean %s?)", sug) or "")
    end
  end
  return nil
end

-- parse_args(def, words) -> args | nil, msg. words are "key=value" or positional values.
function M.parse_args(def, words)
  local by_name, positional, names = {}, {}, {}
  local rest -- an argument of type "rest" collects every word no other argument takes, in order
  for _, a in ipairs(def.args) do
    if a.type == "rest" then rest = a else
      by_name[a.name] = a
      names[#names + 1] = a.name
      if a.positional then positional[a.positional] = a end
    end
  end
  local args, pos = {}, 0
  if rest then args[rest.name] = json.array({}) end
  for _, w in ipairs(words) do
    local k, v = w:match("^([%w_%-]+)=(.*)$")
    local a
    if k and not by_name[k] and not by_name[k:gsub("%-", "_")] and rest then
      table.insert(args[rest.name], w)
      goto next_word
    end
    if not k and rest and not positional[pos + 1] then
      table.insert(args[rest.name], w)
      goto next_word
    end
    if k then
      a = by_name[k] or by_name[k:gsub("%-", "_")]
      if not a then
        local s = M.suggest(k, names)
        return nil, string.format("%s: unknown argument %q%s", def.name, k,
          s and string.format(" (did you mean %s=?)", s) or
          (#names > 0 and " (arguments: " .. table.concat(names, ", ") .. ")" or " (it takes no arguments)"))
      end
    else
      pos = pos + 1
      a = positional[pos]
      v = w
      if not a then
        return nil, string.format("%s: unexpected argument %q (use key=value%s)", def.name, w,
          #names > 0 and "; arguments: " .. table.concat(names, ", ") or "")
      end
    end
    local val, err = convert(a, v)
    if val == nil then return nil, def.name .. ": " .. err end
    local cerr = M.check_choices(def, a, val)
    if cerr then return nil, cerr end
    args[a.name] = val
    ::next_word::
  end
  for _, a in ipairs(def.args) do
    if args[a.name] == nil and a.type ~= "rest" then
      if a.default ~= nil then
        if type(a.default) == "string" and a.type ~= "string" then
          args[a.name] = assert(convert(a, a.default))
        else
          args[a.name] = a.default
        end
      elseif a.required then
        return nil, string.format("%s: missing argument %s (%s)", def.name, a.name, a.help or a.type)
      end
    end
  end
  return args
end

---------------------------------------------------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------------------------------------------------

local Out = {}
Out.__index = Out

-- Display width of a string (UTF-8 characters; invalid UTF-8 counts bytes).
local function width(text) return utf8.len(text) or #text end

-- The first n characters of text (UTF-8 aware), with "…" when it was cut.
function M.cut(text, n)
  if width(text) <= n then return text end
  if n <= 1 then return "" end
  local stop = utf8.offset(text, n) or (n + 1)
  return text:sub(1, stop - 1):gsub("%s+$", "") .. "…"
end

-- wrap(text, cols, indent) -> lines: text wrapped at spaces to cols columns, continuation lines start with indent.
-- A word longer than a line stays whole. Without cols (not a terminal) the text is one line.
function M.wrap(text, cols, indent)
  indent = indent or ""
  if not cols or width(text) <= cols then return { text } end
  -- Words keep the spaces before them (aligned columns stay aligned); a line breaks only between words.
  local lines, cur = {}, nil
  for sp, word in text:gmatch("(%s*)(%S+)") do
    if cur == nil then
      cur = sp .. word
    elseif width(cur .. sp .. word) > cols and cur ~= indent then
      lines[#lines + 1] = cur
      cur = indent .. word
    else
      cur = cur .. sp .. word
    end
  end
  lines[#lines + 1] = cur or text
  return lines
end

local function new_output(opts)
  local o = setmetatable({ json = opts.json, quiet = opts.quiet, verbose = opts.verbose, run_log = {} }, Out)
  o.live = not opts.json and not opts.quiet and host.isatty(2)
  o.tty_out = not opts.json and host.isatty(1)
  return o
end

-- The terminal's width now (it may change during a run), or nil when the stream is not a terminal.
function Out:columns(fd)
  if fd == 2 and not self.live then return nil end
  if fd == 1 and not self.tty_out then return nil end
  return host.columns(fd)
end

function Out:line(text)
  self.run_log[#self.run_log + 1] = text
  if self.json or self.quiet then return end
  if self.live then
    -- on a terminal, wrapped to its width (continuation lines indented under the message)
    io.stderr:write("\r\27[K")
    text = table.concat(M.wrap(text, self:columns(2), "        "), "\n")
  end
  io.stderr:write(text, "\n")
  io.stderr:flush()
end

-- A message that must reach the operator now, whatever the options (stderr; also in run.log).
function Out:note(text)
  self.run_log[#self.run_log + 1] = text
  if self.live then io.stderr:write("\r\27[K") end
  io.stderr:write(text, "\n")
  io.stderr:flush()
end

-- The live status line: one line, never longer than the terminal is wide (a longer one would wrap and leave a
-- line behind at every redraw).
function Out:status(text)
  if not self.live or self.prompting then return end
  local cols = self:columns(2) or 80
  io.stderr:write("\r\27[K", M.cut(text, cols - 1))
  io.stderr:flush()
end

-- The closing lines (verdict, bundle, findings) go to stdout, unless --json owns stdout. style "dim": quietly
-- styled on a terminal (info findings).
function Out:final(text, style)
  self.run_log[#self.run_log + 1] = text
  if self.json then return end
  if style == "dim" and self.tty_out then text = "\27[2m" .. text .. "\27[0m" end
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

-- A finding's closing lines, wrapped to the terminal. Info findings are shown too (dim), except with -q.
function Out:finding(f)
  if f.severity == "info" and self.quiet then return end
  local cols = self:columns(1)
  local style = f.severity == "info" and "dim" or nil
  local head = string.format("  [%s] %s%s", f.severity, f.code and (f.code .. ": ") or "", f.message)
  for _, l in ipairs(M.wrap(head, cols, "         ")) do self:final(l, style) end
  if f.remediation then
    for _, l in ipairs(M.wrap("         fix: " .. f.remediation, cols, "              ")) do self:final(l, style) end
  end
end

function Out:clear()
  if self.live then io.stderr:write("\r\27[K") io.stderr:flush() end
end

---------------------------------------------------------------------------------------------------------------------
-- Running
---------------------------------------------------------------------------------------------------------------------

local Step = {}
Step.__index = Step

local function worse(a, b)
  return (SEVERITY_RANK[b] or 0) > (SEVERITY_RANK[a] or 0) and b or a
end

-- The bundle of a runbook that does not collect: every add_* does nothing (returns true), entries() is empty, so a
-- step adds what it would collect without asking first (s.collecting says whether anything is kept).
local NO_BUNDLE = setmetatable({}, { __index = function(_, k)
  if k == "entries" then return function() return {} end end
  return function() return true end
end })
M.NO_BUNDLE = NO_BUNDLE

-- path(p) -> the host path p as this run sees it: under --root, or the simulated host's root with --sim.
function Step:path(p) return host.path(p) end
function Step:progress(text) self.waiting_on = text end
-- Structured data for --json consumers: becomes result.output.
function Step:output(value) self.result.output = value end
function Step:log(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  local line = table.concat(parts, " ")
  for l in (line .. "\n"):gmatch("(.-)\n") do self.record.log[#self.record.log + 1] = l end
  if self.out.verbose then self.out:line("    | " .. line) end
end
function Step:ok(msg) if msg then self.record.message = msg end end
function Step:warn(msg)
  self.record.outcome = worse(self.record.outcome, "warn")
  if msg then self.record.message = msg end
end
function Step:fail(msg)
  self.record.outcome = worse(self.record.outcome, "fail")
  if msg then self.record.message = msg end
end
-- Ends the run as a usage error (exit 2): the arguments make no sense for what they name (an unknown error code, a
-- path that is a directory, …). The step is recorded as failed with msg; the remaining steps are skipped.
function Step:usage(msg)
  self.record.outcome = "fail"
  self.record.message = msg
  self.result.usage_error = msg
  error({ nd_usage = true }, 0)
end

-- ask(question) -> true (yes) | false (no) | nil (no one to ask: not a terminal, or --json). Waits for one line on
-- the terminal without stopping the loop (timers, signals and the deadline still work). Only "y"/"yes" is yes.
function Step:ask(question)
  if not self.interactive then return nil end
  local co = coroutine.running()
  local tty = uv.new_tty(0, true)
  if not tty then return nil end
  local guard <close> = setmetatable({}, { __close = function()
    pcall(function() tty:read_stop() end)
    if not tty:is_closing() then tty:close() end
  end })
  self.out:clear()
  self.out.prompting = true
  io.stderr:write(question, " [y/N] ")
  io.stderr:flush()
  local buf, done = "", false
  tty:read_start(function(err, data)
    if err or not data then done = true else buf = buf .. data end
    if buf:find("\n") then done = true end
    if done then nd.resume(co) end
  end)
  repeat coroutine.yield() until done
  self.out.prompting = false
  local answer = (buf:match("^%s*(%S*)") or ""):lower()
  self.out.run_log[#self.out.run_log + 1] = question .. " [y/N] " .. answer
  return answer == "y" or answer == "yes"
end

function Step:skip(reason)
  self.record.outcome = "skipped"
  self.record.message = reason
  error({ nd_skip = true }, 0)
end
function Step:finding(f)
  assert(type(f) == "table" and f.message, "a finding needs at least a message")
  local sev = f.severity or "info"
  local finding = { code = f.code, severity = sev, message = f.message, step = self.record.name,
                    evidence = json.array(f.evidence or {}), remediation = f.remediation }
  table.insert(self.record.findings, finding)
  table.insert(self.result.findings, finding)
  if sev == "fail" then self:fail(self.record.message or f.message)
  elseif sev == "warn" then self:warn(self.record.message or f.message) end
  if not self.record.message then self.record.message = f.message end
  return finding
end

-- clean_traceback(text) -> text without nitrodiag's own frames (the engine, the task runner, the spec runner, C
-- calls into them): what is left points at the runbook or spec file.
function M.clean_traceback(text)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local internal = line:match("^%s+%[C%]: in %?$") or line:match("^%s+%[C%]: in function 'xpcall'") or
      line:match("^%s+%[C%]: in function 'pcall'") or line:match("^%s+%[C%]: in function 'error'") or
      line:match("^%s+%[C%]: in function 'assert'") or
      line:match("^%s+[^%s]*nd[/.]runbook[%.lua]*:") or line:match("^%s+[^%s]*nd[/.]spec[%.lua]*:") or
      line:match("^%s+[^%s]*nd[/.]init[%.lua]*:") or line:match("^%s+%[string \"nd[%.%w_]*\"%]:") or
      line:match("^%s+%(%.%.%.tail calls%.%.%.%)")
    if not internal then out[#out + 1] = line end
  end
  while #out > 0 and out[#out] == "" do out[#out] = nil end
  if out[#out] == "stack traceback:" then out[#out] = nil end
  return table.concat(out, "\n")
end

local function iso(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", math.floor((t - secs) * 1000))
end

-- the host's wall clock: on a simulated host with an advancing clock, that clock (nd.sim.clock)
local wall_offset = 0
local function wallclock()
  local s, us = uv.gettimeofday()
  local clock = nd.simclock()
  if clock then wall_offset = math.max(wall_offset, clock.offset()) end
  return s + us / 1e6 + wall_offset
end

-- sweep_stale(dirs, out) -> list of what was done: the temporaries a killed earlier run left in each directory are
-- removed (their owner pid is gone; core/nd_tmp.h), a half-written bundle holding complete members is kept as
-- <name>.partial.tar.gz. Says so on `out` (an Out) when given.
function M.sweep_stale(dirs, out)
  local okb, bmod = pcall(require, "nd.bundle")
  local done = {}
  if not okb or not bmod.sweep then return done end
  for _, d in ipairs(dirs) do
    for _, e in ipairs(bmod.sweep(d) or {}) do
      done[#done + 1] = e
      if out then
        if e.action == "salvaged" then
          out:line("note: a killed earlier run left a partial bundle: kept as " .. e.detail)
        elseif e.action == "removed" then
          out:line("note: removed " .. e.path .. " (left by a killed earlier run)")
        else
          out:line("note: cannot clean " .. e.path .. " (left by a killed earlier run): " .. tostring(e.detail))
        end
      end
    end
  end
  return done
end

-- The artifacts a step declares (st.collects: a list, or a function(args) returning one) that the bundle has no
-- entry for are recorded as "skipped" with `why`, so the manifest of an interrupted run lists what is missing.
-- A declared name starting with "/" is a host file or glob (matched against the entries' source/glob).
local function record_missing(bundle, st, args, why)
  if not bundle or not st.collects then return end
  local okn, names = pcall(function()
    if type(st.collects) == "function" then return st.collects(args) end
    return st.collects
  end)
  if not okn or type(names) ~= "table" then return end
  local okl, entries = pcall(bundle.entries, bundle)
  if not okl then return end
  local have = {}
  for _, e in ipairs(entries) do
    if e.name then have[e.name] = true end
    if e.glob then have[e.glob] = true end
    if e.source then have[e.source] = true end
  end
  for _, n in ipairs(names) do
    if not have[n] then
      local name = n:sub(1, 1) == "/" and (n:match("[^/]+$") or n) or n
      pcall(bundle.record, bundle, name, { status = "skipped", error = why, kind = "planned",
                                           source = n:sub(1, 1) == "/" and n or nil })
    end
  end
end

-- The simulated host for --sim: the sim object (closed by the caller, <close>) | nil after setting result.error.
local function start_sim(opts, result, ctx)
  local ok, simmod = pcall(require, "nd.sim")
  if not ok or not simmod then
    result.error = "the simulated host is not available in this build"
    return nil
  end
  local sim, err = simmod.activate(opts.sim)
  if not sim then
    result.error = "cannot start the simulated host: " .. tostring(err)
    return nil
  end
  ctx.root = host.root()
  local okst, st = pcall(function() return sim:state() end)
  if okst and st and st.host and st.host.hostname then result.host = st.host.hostname end
  return sim
end

-- The bundle of a runbook that collects: the bundle | nil after setting result.bundle_error.
local function open_bundle(def, opts, result)
  if not def.collect then return nil end
  local okb, bmod = pcall(require, "nd.bundle")
  if not okb or not bmod then
    result.bundle_error = "bundle support is not available in this build"
    return nil
  end
  local key = opts.sign_key or os.getenv("NITRODIAG_SIGN_KEY")
  local b, err = bmod.open{ out_dir = opts.out or ".", runbook = def.name, host = result.host,
                            sign_key = (key and key ~= "") and key or nil }
  if not b then result.bundle_error = tostring(err) end
  return b
end

-- Signals: SIGINT/SIGTERM cancel the running step (run.task) and end the run with what was collected. They never
-- cancel an `always` step (clean-up): that one is bounded by its own timeout, so a second Ctrl-C cannot leave
-- behind what the run started. Returns a to-be-closed value that stops watching.
local function watch_signals(run)
  local result, out = run.result, run.out
  local told = false
  local function on_signal(name)
    if run.finishing then -- the verdict is decided: the run is not marked interrupted after the fact
      if not told then out:note(string.format("nitrodiag: %s: the steps are done; writing the bundle and the report first", name)) end
      told = true
      return
    end
    if not result.interrupted then
      result.interrupted = true
      result.interrupt_reason = "interrupted by " .. name
    end
    local cur = run.step
    if cur and cur.always then
      out:note(string.format("nitrodiag: %s: finishing clean-up step '%s' first (at most %g s); the run then ends",
        name, cur.name, cur.limit or 0))
      return
    end
    if run.task then run.task:cancel("interrupted by " .. name) end
  end
  local handles = {}
  for _, sig in ipairs({ "sigint", "sigterm" }) do
    local h = uv.new_signal()
    h:start(sig, function() on_signal(sig:upper()) end)
    handles[#handles + 1] = h
  end
  return setmetatable({}, { __close = function() for _, h in ipairs(handles) do h:close() end end })
end

-- Runs step i of the run as a task with its time limit; fills its record in result.steps and sets
-- run.stop_reason when the rest must not run (a usage error, the deadline, a signal, a required step failing).
local function run_step(run, i, st)
  local def, result, out, args, data = run.def, run.result, run.out, run.args, run.data
  local record = { name = st.name, outcome = "ok", findings = json.array({}), log = json.array({}),
                   started_at = iso(wallclock()) }
  result.steps[#result.steps + 1] = record
  local t0 = nd.now()
  if run.stop_reason and not st.always then
    record.outcome, record.message, record.duration = "skipped", run.stop_reason, 0
    record_missing(run.bundle, st, args, string.format("step '%s' %s", st.name, run.stop_reason))
  elseif st.when and not st.when(args, data) then
    record.outcome, record.message, record.duration = "skipped", st.skip_reason or "not applicable", 0
  else
    local s = setmetatable({ args = args, data = data, bundle = run.bundle or NO_BUNDLE, collecting = run.bundle ~= nil,
                             sim = run.sim, ctx = run.ctx, record = record, result = result, out = out, step_index = i,
                             runbook = def, json = run.opts.json and true or false, interactive = run.interactive },
                           Step)
    local remaining = run.deadline_at - nd.now()
    local limit = math.min(st.timeout or 60, math.max(remaining, 0))
    local by_deadline = (st.timeout or 60) >= remaining
    if st.always and (run.stop_reason or remaining <= 0) then
      -- Clean-up steps still run after a stop, with a short grace past the deadline.
      limit = math.min(st.timeout or 60, M.ALWAYS_GRACE)
      by_deadline = false
    end
    -- On a simulated host with an advancing clock the limit is on that clock: nothing may advance it past the
    -- step's end (the horizon), and the step times out when the host's time is up (nd.now() follows that clock).
    local clock = nd.simclock()
    local prev_horizon = clock and clock.set_horizon(clock.time() + math.max(limit - (nd.now() - t0), 0))
    local task = nd.spawn(function() return st.run(s, args, data) end)
    run.task = task
    run.step = { name = st.name, always = st.always, limit = limit }
    local ticker = uv.new_timer()
    local timed_out = false
    local timer = uv.new_timer()
    local function expire()
      if timed_out or nd.now() - t0 < limit then return end
      timed_out = true
      task:cancel("timeout")
    end
    if clock then
      timer:start(math.min(math.floor(limit * 1000), 20), 20, expire)
    else
      timer:start(math.floor(limit * 1000), 0, function()
        timed_out = true
        task:cancel("timeout")
      end)
    end
    ticker:start(0, 250, function()
      out:status(string.format("[%d/%d] %s  %.1fs%s", i, #def.steps, st.name, nd.now() - t0,
        s.waiting_on and ("  " .. s.waiting_on) or ""))
    end)
    local ok, err = task:join()
    timer:close()
    ticker:close()
    if clock and nd.simclock() then clock.set_horizon(prev_horizon) end
    run.task, run.step = nil, nil
    out:clear()
    if not ok then
      if type(err) == "table" and err.nd_skip then
        -- s:skip() already set the outcome
      elseif type(err) == "table" and err.nd_usage then
        run.stop_reason = run.stop_reason or "not run: usage error"
      elseif timed_out then
        record.outcome = "timeout"
        if by_deadline then
          record.message = string.format("the run deadline (%g s) was hit during this step", run.deadline)
          result.deadline_hit = true
          run.stop_reason = "not run: the run deadline was hit"
        else
          record.message = string.format("timed out after %g s%s", st.timeout or 60,
            s.waiting_on and (" while " .. s.waiting_on) or "")
        end
      elseif result.interrupted then
        record.outcome = "fail"
        record.message = result.interrupt_reason
        run.stop_reason = run.stop_reason or ("not run: " .. result.interrupt_reason)
      else
        record.outcome = "fail"
        local msg = M.clean_traceback(tostring(err))
        record.error = msg
        record.message = record.message or ("step raised an error: " .. (msg:match("^[^\n]*") or msg))
      end
    end
    if not ok and not (type(err) == "table" and err.nd_skip) then
      record_missing(run.bundle, st, args, string.format("step '%s' was stopped before collecting it: %s", st.name,
        record.message or record.outcome))
    end
    if result.interrupted and not run.stop_reason then run.stop_reason = "not run: " .. result.interrupt_reason end
    if st.required and (record.outcome == "fail" or record.outcome == "timeout") and not run.stop_reason then
      run.stop_reason = "not run: required step '" .. st.name .. "' did not pass"
    end
  end
  record.duration = nd.now() - t0
  local mark = ({ ok = "ok  ", warn = "WARN", fail = "FAIL", skipped = "skip", timeout = "TIME" })[record.outcome]
  -- after a usage error the steps it skipped say nothing useful: only the error is shown (the result keeps them)
  if not (result.usage_error and record.outcome == "skipped") then
    out:line(string.format("  %s  %-28s %6.1fs  %s", mark, st.name, record.duration, record.message or ""))
  end
  if out.verbose and record.error then out:line("        " .. record.error:gsub("\n", "\n        ")) end
end

-- The verdict and exit status from the steps' outcomes and how the run ended.
local function decide(result)
  local worst = "ok"
  for _, r in ipairs(result.steps) do worst = worse(worst, r.outcome) end
  if result.usage_error then
    result.verdict, result.exit_code = "error", M.EXIT.usage
  elseif result.deadline_hit then
    result.verdict, result.exit_code = "timeout", M.EXIT.deadline
  elseif result.interrupted then
    result.verdict, result.exit_code = "error", M.EXIT.failed
  elseif worst == "fail" or worst == "timeout" then
    result.verdict, result.exit_code = "fail", M.EXIT.failed
  elseif worst == "warn" then
    result.verdict, result.exit_code = "warn", M.EXIT.ok
  else
    result.verdict, result.exit_code = "pass", M.EXIT.ok
  end
end

-- The bundle: step logs and the run log, then the manifest and reports, written atomically (aborted, and marked
-- so, when the run was stopped).
local function write_bundle(bundle, result, out)
  for i, r in ipairs(result.steps) do
    if #r.log > 0 then
      bundle:add_string(string.format("steps/%02d-%s.log", i, r.name:gsub("[^%w_%-]+", "_")),
        table.concat(r.log, "\n") .. "\n")
    end
  end
  bundle:add_string("run.log", table.concat(out.run_log, "\n") .. "\n")
  local path, err
  if result.deadline_hit or result.interrupted then
    path, err = bundle:abort(result.deadline_hit and "deadline" or result.interrupt_reason, result)
  else
    path, err = bundle:finish(result)
  end
  if path then
    result.bundle = path
  else
    -- a run asked to collect that could not write its bundle fails (terminal, --json and the exit status SSM sees)
    result.bundle_error = tostring(err)
    local finding = { code = "BUNDLE_NOT_WRITTEN", severity = "fail", step = "bundle",
      message = "the bundle was not written: " .. result.bundle_error, evidence = json.array({}),
      remediation = "free space where --out points (or choose another --out) and run again" }
    table.insert(result.findings, finding)
    if result.exit_code == M.EXIT.ok then result.verdict, result.exit_code = "fail", M.EXIT.failed end
  end
end

-- The closing lines: verdict, bundle, findings, the runbook's report.
local function print_result(def, result, out, opts)
  out:final(string.format("verdict: %s (%s%d steps, %.1f s)%s", result.verdict:upper(),
    result.usage_error and "usage error, " or "", #result.steps, result.duration,
    result.bundle and ("\nbundle: " .. result.bundle) or (result.bundle_error and ("\nbundle: not written: " .. result.bundle_error) or "")))
  if result.usage_error then io.stderr:write("nitrodiag: ", def.name, ": ", result.usage_error, "\n") end
  for _, f in ipairs(result.findings) do out:finding(f) end
  if result.report and not opts.json and not opts.quiet then io.stdout:write(result.report, "\n") end
end

-- execute(def, args, opts) -> result. opts: json, quiet, verbose, out_dir, deadline, sim (scenario), root.
-- The simulated host (--sim) lives exactly as long as the steps and the bundle (<close>); the steps run in order
-- (run_step), then the verdict (decide), the runbook's report (given result and data), the bundle and the output.
function M.execute(def, args, opts)
  opts = opts or {}
  local out = new_output(opts)
  wall_offset = 0
  local t_start, wall_start = nd.now(), wallclock()
  local deadline = tonumber(opts.deadline) or def.deadline or 600
  local result = {
    runbook = def.name, version = host.version(), host = host.hostname(), started_at = iso(wall_start),
    args = args, sim = opts.sim, interrupted = false, steps = json.array({}), findings = json.array({}),
  }
  local run = { def = def, args = args, opts = opts, out = out, result = result, data = {},
                ctx = { root = host.root(), nitro_cli = host.nitro_cli() }, deadline = deadline,
                deadline_at = t_start + deadline,
                -- Someone to ask: a terminal on stdin and stderr, and no --json (s:ask returns nil otherwise).
                interactive = not opts.json and opts.interactive ~= false and host.isatty(0) and host.isatty(2) }

  out:line(string.format("nitrodiag %s — %s%s", def.name, def.description, opts.sim and (" [simulated host: " .. opts.sim .. "]") or ""))

  -- watch_signals' handle, set when the steps start and closed when execute returns (however it returns)
  local signals <close> = setmetatable({}, { __close = function(t) if t.watch then getmetatable(t.watch).__close(t.watch) end end })
  do
    local sim <close> = opts.sim and start_sim(opts, result, run.ctx) or nil
    if opts.sim and not sim then
      result.verdict, result.exit_code = "error", M.EXIT.usage
      out:line("error: " .. result.error)
      return result
    end
    run.sim = sim
    -- What a killed earlier run left behind (TMPDIR, the output directory) is cleaned up first.
    local tmp = os.getenv("TMPDIR")
    local sweep_dirs = { (tmp and tmp ~= "") and tmp or "/tmp" }
    -- the simulated host's vsock sockets live under /tmp whatever TMPDIR is (socket paths are short)
    if opts.sim and sweep_dirs[1] ~= "/tmp" then sweep_dirs[#sweep_dirs + 1] = "/tmp" end
    if def.collect then sweep_dirs[#sweep_dirs + 1] = opts.out or "." end
    result.cleaned = M.sweep_stale(sweep_dirs, out)
    -- A run asked to collect that cannot write its bundle fails; when the bundle cannot even be created, nothing
    -- is run (the host is not touched for a report that cannot be kept).
    run.bundle = open_bundle(def, opts, result)
    if def.collect and not run.bundle then
      result.verdict, result.exit_code = "error", M.EXIT.failed
      result.error = "cannot collect: " .. result.bundle_error
      result.ended_at = iso(wallclock())
      result.duration = nd.now() - t_start
      local hint = result.bundle_error:find("libarchive", 1, true) and "install libarchive (Debian/Ubuntu: libarchive13)"
        or "choose a writable --out"
      out:line("error: " .. result.error .. " (nothing was run; " .. hint .. ")")
      out:final("verdict: ERROR\nbundle: not written: " .. result.bundle_error)
      return result
    end
    -- Watched until the run returns: a signal after the last step no longer cancels anything, and the bundle and
    -- the report are still written (the default action would kill the process half-way through the bundle).
    signals.watch = watch_signals(run)
    for i, st in ipairs(def.steps) do run_step(run, i, st) end
    run.finishing, run.step, run.task = true, nil, nil
    decide(result)
    result.ended_at = iso(wallclock())
    result.duration = nd.now() - t_start
    if def.report then
      local okr, extra = pcall(def.report, result, run.data)
      if okr and type(extra) == "string" then result.report = extra end
    end
    if run.bundle then write_bundle(run.bundle, result, out) end
  end -- the simulated host is closed here

  print_result(def, result, out, opts)
  return result
end

return M
