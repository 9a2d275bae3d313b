-- nd.spec — the spec runner behind `nitrodiag spec FILE…`: describe/it/eq… as globals, each `it` run as a task on
-- the shared loop (so waiting primitives work), with a timeout per case. Operators can test their own runbooks
-- with it against the simulated host. Prints one line per case and ends with "N passed, N failed". While a file loads
-- and while its cases run, spec.file is its path and spec.dir its directory (fixtures next to the spec); a failure's
-- traceback leaves out nitrodiag's own frames.
local nd = require "nd"
local fs = require "nd.fs"
local proc = require "nd.proc"

local M = {}

local function deep_eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do if not deep_eq(v, b[k], seen) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local ok, cjson = pcall(require, "cjson")
  if ok then
    local okj, s = pcall(cjson.encode, v)
    if okj then return s end
  end
  return tostring(v)
end

local function fail(msg, level) error(msg, (level or 1) + 2) end

local api = {}
function api.eq(actual, expected, msg)
  if not deep_eq(actual, expected) then
    fail(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", show(expected), show(actual)))
  end
end
function api.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    fail(string.format("%sexpected %s to match %q", msg and (msg .. ": ") or "", show(s), pattern))
  end
end
function api.truthy(v, msg) if not v then fail((msg or "expected a true value") .. ", got " .. show(v)) end end
function api.falsy(v, msg) if v then fail((msg or "expected a false value") .. ", got " .. show(v)) end end
function api.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error") end
  if pattern and not tostring(err):find(pattern) then
    fail(string.format("error %q does not match %q", tostring(err), pattern))
  end
  return err
end

-- Runs the spec files; returns the exit status (0 all passed, 1 some failed).
function M.run_files(files, opts)
  opts = opts or {}
  local cases, stack = {}, {}
  local befores, afters = {}, {}
  local tmpdirs = {}
  local env = setmetatable({}, { __index = _G })
  for k, v in pairs(api) do env[k] = v end
  env.describe = function(name, fn)
    table.insert(stack, name)
    local nb, na = #befores, #afters
    fn()
    for i = #befores, nb + 1, -1 do befores[i] = nil end
    for i = #afters, na + 1, -1 do afters[i] = nil end
    table.remove(stack)
  end
  env.it = function(name, fn, timeout)
    local full = table.concat(stack, " ") .. (#stack > 0 and " " or "") .. name
    table.insert(cases, { name = full, fn = fn, timeout = timeout or opts.timeout or 60, file = env.spec.file,
                          befores = { table.unpack(befores) }, afters = { table.unpack(afters) } })
  end
  env.before_each = function(fn) table.insert(befores, fn) end
  env.after_each = function(fn) table.insert(afters, fn) end
  env.spec = {
    nitrodiag = require("nd.host").exe(),
    source_dir = os.getenv("ND_SOURCE_DIR") or require("nd.host").source_dir(),
    binary_dir = os.getenv("ND_BINARY_DIR") or ".",
    tmpdir = function()
      local d = assert(fs.tmpdir("nd-spec"))
      table.insert(tmpdirs, d)
      return d
    end,
    run = proc.run,
  }
  _G.spec = env.spec
  for k, v in pairs(api) do _G[k] = v end

  local load_failed = 0
  local function set_file(file)
    env.spec.file = file
    env.spec.dir = file and (file:match("^(.*)/[^/]*$") or ".") or nil
  end
  for _, file in ipairs(files) do
    set_file(file)
    local chunk, err = loadfile(file, "t", env)
    if not chunk then
      print("FAIL load " .. file .. ": " .. err)
      load_failed = load_failed + 1
    else
      local ok, lerr = xpcall(chunk, debug.traceback)
      if not ok then
        print("FAIL load " .. file .. ": " .. clean(tostring(lerr)))
        load_failed = load_failed + 1
      end
    end
  end

  local clean = require("nd.runbook").clean_traceback
  local passed, failed = 0, load_failed
  for _, c in ipairs(cases) do
    set_file(c.file)
    local t0 = nd.now()
    local task = nd.spawn(function()
      for _, b in ipairs(c.befores) do b() end
      local ok, err = xpcall(c.fn, debug.traceback)
      for _, a in ipairs(c.afters) do a() end
      return ok, err
    end)
    local timer_task = nd.spawn(function() nd.sleep(c.timeout, { real = true }) task:cancel("timed out after " .. c.timeout .. " s") end)
    local joined, ok, err = task:join()
    if not joined then ok, err = false, ok end
    timer_task:cancel()
    if ok then
      passed = passed + 1
      print(string.format("ok   %s (%.2f s)", c.name, nd.now() - t0))
    else
      failed = failed + 1
      print(string.format("FAIL %s\n     %s", c.name, clean(tostring(err)):gsub("\n", "\n     ")))
    end
    io.stdout:flush()
  end
  for _, d in ipairs(tmpdirs) do fs.rm_rf(d) end
  print(string.format("%d passed, %d failed", passed, failed))
  return failed == 0 and 0 or 1
end

return M
